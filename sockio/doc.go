// Package sockio reads and writes a stream socket (TCP or unix) with raw
// nonblocking system calls, waiting for readiness in Go's network poller
// exactly as net.Conn does (deadlines, Close and readiness behave the
// same), but without the runtime's blocking-syscall bookkeeping.
//
// Why: net.Conn's Read and Write go through syscall.Read and
// syscall.Write, which tell the runtime that the thread may block. When
// obsproxy shares a CPU with its Python workers, the kernel often preempts
// its thread inside such a call; the runtime's monitor thread (sysmon) then
// finds the processor "in a syscall", hands it to another thread and polls
// every 20 µs again, and every idle-to-busy transition wakes it. On a
// socket in nonblocking mode the call never blocks, so that bookkeeping
// buys nothing: in the overload benchmark (docs/performance.md, "Raw socket
// I/O") it cost about a fifth of obsproxy's CPU and 6 % of the workers'
// goodput, and sysmon woke 2,200 times a second (170 without it). Go's own
// poller makes the same choice for epoll_wait (a raw call).
//
// Conn (IO with the fallback) is embedded by the connection wrappers on the
// request path: connstate.Conn (clients) and the proxy's worker
// connections (lifecycle.Worker.DialTracked). Anything else (a pipe, a
// datagram socket, another OS) keeps its own Read and Write: IO.Init
// reports false. TLS on the public listener wraps connstate.Conn, so it
// reads and writes through it too.
package sockio
