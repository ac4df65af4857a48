package core

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The header layout is the file format: these fail to compile if the
// struct drifts from the offsets documented on HandoffRing.
var ringLayout ringShared

var (
	_ [ringHeaderSize - unsafe.Sizeof(ringLayout)]struct{}
	_ [unsafe.Sizeof(ringLayout) - ringHeaderSize]struct{}
	_ [128 - unsafe.Offsetof(ringLayout.prod)]struct{}
	_ [unsafe.Offsetof(ringLayout.prod) - 128]struct{}
	_ [256 - unsafe.Offsetof(ringLayout.cons)]struct{}
	_ [unsafe.Offsetof(ringLayout.cons) - 256]struct{}
)

// ringSharedAt returns the header at the start of a mapping. mmap returns
// page-aligned memory, so the 64-bit atomics in it are aligned.
func ringSharedAt(mem []byte) *ringShared {
	return (*ringShared)(unsafe.Pointer(&mem[0]))
}

// NewHandoffRing makes a ring over anonymous memory, for lcores that are
// threads of one process. slots must be a power of two; slotSize is the
// longest frame a slot holds (the NIC frame size). Close unmaps it.
func NewHandoffRing(slots, slotSize int) (*HandoffRing, error) {
	size, err := handoffRingSize(slots, slotSize)
	if err != nil {
		return nil, fmt.Errorf("new handoff ring: %w", err)
	}
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("new handoff ring: mmap %d bytes: %w", size, err)
	}
	return newHandoffRingOver(mem, ringSharedAt(mem), slots, slotSize, true), nil
}

// CreateHandoffRing makes a ring in a new file at path (normally under
// /dev/shm) for another process to join with OpenHandoffRing; the caller is
// the consumer. The file is built under a temporary name and renamed into
// place once its header is complete, so a producer never sees half a ring;
// a file already at path (left by a crashed run) is replaced. Its memory is
// reserved with fallocate, so a full tmpfs fails here rather than with
// SIGBUS on first use. Close unmaps the ring; Remove deletes the file.
func CreateHandoffRing(path string, slots, slotSize int) (_ *HandoffRing, err error) {
	size, err := handoffRingSize(slots, slotSize)
	if err != nil {
		return nil, fmt.Errorf("create handoff ring %s: %w", path, err)
	}
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create handoff ring: %w", err)
	}
	// The mapping outlives the descriptor.
	defer f.Close()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	fd := int(f.Fd())
	if err := unix.Fallocate(fd, 0, 0, int64(size)); err != nil {
		if !errors.Is(err, unix.EOPNOTSUPP) {
			return nil, fmt.Errorf("create handoff ring %s: reserve %d bytes: %w", path, size, err)
		}
		if err := f.Truncate(int64(size)); err != nil {
			return nil, fmt.Errorf("create handoff ring %s: %w", path, err)
		}
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("create handoff ring %s: mmap %d bytes: %w", path, size, err)
	}
	r := newHandoffRingOver(mem, ringSharedAt(mem), slots, slotSize, true)
	if err := os.Rename(tmp, path); err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("create handoff ring: %w", err)
	}
	r.path, r.creator = path, true
	return r, nil
}

// OpenHandoffRing joins the ring that CreateHandoffRing made at path, as its
// producer. It checks the header (magic, version, geometry, file size) and
// fails with an error matching ErrBadHandoffRing when it does not describe
// this version's ring. The producer holds an exclusive flock on the file
// until Close, so a second producer fails with ErrHandoffRingBusy; the
// kernel drops the lock when the process dies, so a restarted producer can
// join again (and continues from the last index its predecessor published).
func OpenHandoffRing(path string) (_ *HandoffRing, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open handoff ring: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	fd := int(f.Fd())
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("open handoff ring %s: %w", path, ErrHandoffRingBusy)
		}
		return nil, fmt.Errorf("open handoff ring %s: lock: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open handoff ring: %w", err)
	}
	if min := int64(ringHeaderSize + handoffRingStride(1)); st.Size() < min || st.Size() > math.MaxInt {
		return nil, fmt.Errorf("open handoff ring %s: %w: file is %d bytes, a ring is at least %d",
			path, ErrBadHandoffRing, st.Size(), min)
	}
	size := int(st.Size())
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("open handoff ring %s: mmap %d bytes: %w", path, size, err)
	}
	sh := ringSharedAt(mem)
	if err := checkHandoffRingHeader(sh, size); err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("open handoff ring %s: %w", path, err)
	}
	r := newHandoffRingOver(mem, sh, int(sh.slots), int(sh.slotSize), false)
	r.path, r.lock = path, f
	return r, nil
}

// Close unmaps the ring and, for a producer, releases its lock on the file.
// It is idempotent. Both sides must have stopped using the ring, and the
// consumer must hold no views from Dequeue: they point into the unmapped
// memory. After Close, Enqueue and Dequeue return 0. Close does not delete
// the file; the creator does that with Remove.
func (r *HandoffRing) Close() error {
	r.closeOnce.Do(func() {
		r.closed = true
		if err := unix.Munmap(r.mem); err != nil {
			r.closeErr = fmt.Errorf("close handoff ring: munmap: %w", err)
		}
		r.sh, r.data, r.mem = nil, nil, nil
		if r.lock != nil {
			r.lock.Close()
		}
	})
	return r.closeErr
}

// Remove deletes the ring's file; only the side that created it may. A
// producer that has it mapped keeps working on the unlinked memory until it
// closes. Removing a file that is already gone is not an error.
func (r *HandoffRing) Remove() error {
	if !r.creator {
		return errors.New("remove handoff ring: only the creator removes the file")
	}
	if err := os.Remove(r.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove handoff ring: %w", err)
	}
	return nil
}
