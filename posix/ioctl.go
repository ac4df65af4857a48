package posix

// ioctl requests that golang.org/x/sys/unix does not name. The values are
// asm-generic's (amd64, arm64, riscv64, loong64), the architectures xstack
// runs on.
const (
	FIONREAD = 0x541b // bytes readable; same as unix.SIOCINQ
	FIONBIO  = 0x5421 // set or clear O_NONBLOCK
)
