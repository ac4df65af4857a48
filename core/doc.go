// Package core is the lcore runtime: it reads config.ini, pins the process
// to its core, opens the NIC queue and the stack, and runs the busy-poll
// loop that drives them.
//
// # Where it sits
//
// Imports point down: nic (one AF_XDP port and its queues) → stack (one
// gVisor stack over one queue) → core → posix (the application API) →
// applications. core is the layer between stack and posix that wires them:
// it gives each lcore a nic queue and a stack over it, steers frames between
// lcores, and owns the loop and the control plane. posix starts its lcores
// through core (Start, StartThreads, Shutdown) and runs the application as
// the loop's callback (Lcore.Run, Lcore.RunPinned). nic and stack do not
// import core: they take plain settings and are driven by whoever owns the
// loop. The TCP/IP protocols are gVisor's, in stack; core only classifies
// frames to steer them.
//
// # How it runs
//
// One Lcore is one core, one NIC queue and one stack. Its loop runs on the
// goroutine that calls Run, and each pass does, in order: read the time
// once (for the loop's busy and idle time) and fire the stack's timers
// that are due (stack.LoopClock), take a burst of frames off the queue,
// hand them to the stack, yield so that gVisor's TCP
// processor goroutines handle them, run the application's loop callback,
// and write the frames the pass produced to the queue in one batch. With
// GOMAXPROCS=1 and the process pinned, gVisor's goroutines run on the same
// core, switched in user space at the yield. Nothing below core knows that
// there may be more than one lcore.
//
// A port whose MTU does not fit one UMEM frame (jumbo frames; the
// multi_buffer key) has multi-buffer queues: the loop takes a burst off
// such a queue as whole frames of one or more buffers each
// (nic.MultiBufferQueue.RxPackets) and the stack joins each frame as it
// copies it into gVisor memory. With several lcores the loop joins them
// itself first, since steering reads and the hand-off rings copy
// contiguous frames.
package core
