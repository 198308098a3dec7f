#ifndef CDAMSELFLY_H
#define CDAMSELFLY_H

/// C shim for what Glibc's Swift overlay does not offer: liburing (its many
/// static inline helpers are importable as they are), XXH64, thread affinity
/// and names, eventfd and a couple of socket and clock helpers.

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/epoll.h>

/// XXH64 of a byte range with a seed (libxxhash).
uint64_t dfly_xxh64(const void *data, size_t length, uint64_t seed);

/// Asks the CPU to start loading the cache line that holds `address`, for a
/// read soon; a hint only, which never faults whatever the address.
static inline void dfly_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

/// Pins the calling thread to one CPU; returns 0 on success.
int dfly_pin_current_thread(int cpu);
/// Names the calling thread (at most 15 characters are kept).
void dfly_set_thread_name(const char *name);
/// The number of CPUs this process may run on (sched_getaffinity).
int dfly_available_cpus(void);
/// The kernel thread id of the caller.
int dfly_gettid(void);

/// The Swift runtime's own call (exported by libswiftCore, stdlib SPI) that
/// marks a heap object immortal: from then on swift_retain / swift_release
/// read its reference count and leave it unwritten (see Immortal.swift).
void _swift_stdlib_immortalize(void *obj);

/// A non-blocking, close-on-exec eventfd.
int dfly_eventfd(void);
int dfly_eventfd_signal(int fd);
int dfly_eventfd_drain(int fd);

/// Monotonic and wall clocks in nanoseconds / milliseconds / microseconds.
uint64_t dfly_monotonic_ns(void);
int64_t dfly_wall_ms(void);
int64_t dfly_wall_us(void);

/// A listening TCP socket bound to host:port (IPv4 or IPv6 literal); returns fd or -errno.
int dfly_listen_tcp(const char *host, int port, int backlog);
/// accept4 with SOCK_CLOEXEC; returns fd or -1.
int dfly_accept(int listen_fd);
/// recv, send (MSG_NOSIGNAL) and epoll_wait as plain system calls: glibc's wrappers are
/// cancellation points, each entering and leaving asynchronous cancellation around the
/// call (some 30 instructions, three per request at P1); no loop thread is ever
/// cancelled. -1 with errno on failure, as the wrappers.
ssize_t dfly_recv(int fd, void *buf, size_t len);
ssize_t dfly_send(int fd, const void *buf, size_t len);
int dfly_epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout);
/// The port a socket is bound to.
int dfly_socket_port(int fd);
/// Sets TCP_NODELAY and O_NONBLOCK on an accepted socket.
void dfly_prepare_client_socket(int fd, int nonblocking, int keepalive_seconds);
/// Formats the peer address of fd as "ip:port" into out; returns length.
int dfly_peer_name(int fd, char *out, int outlen, int local);

/// Resident set size in bytes (from /proc/self/statm).
uint64_t dfly_rss_bytes(void);
/// Bytes in use by malloc (mallinfo2 uordblks + hblkhd).
uint64_t dfly_malloc_used(void);
/// User and system CPU seconds of the process (and of the calling thread when `thread`).
void dfly_cpu_usage(double *user, double *sys, int thread);

/// INCRBYFLOAT as Redis computes it: both operands parsed as long double
/// (strtold, no spaces, no NaN), summed, printed with "%.17Lf" and trailing
/// zeros trimmed. Returns the length written to `out`, -1 when the current
/// value is not a float, -2 when the increment is not, -3 when the result
/// is NaN or infinite.
int dfly_incrbyfloat(const char *current, size_t current_len, const char *increment, size_t increment_len, char *out, size_t out_len);

/// io_uring through an opaque handle: liburing's header is kept out of the
/// Swift-facing module (its socket headers clash with Glibc's module map).
typedef struct dfly_ring dfly_ring;

enum {
    DFLY_SETUP_SINGLE_ISSUER = 1u << 12,
    DFLY_SETUP_DEFER_TASKRUN = 1u << 13,
    DFLY_SETUP_COOP_TASKRUN = 1u << 8,
    DFLY_CQE_F_BUFFER = 1u << 0,
    DFLY_CQE_F_MORE = 1u << 1,
    DFLY_CQE_BUFFER_SHIFT = 16,
};

typedef struct dfly_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
} dfly_cqe;

/// Creates a ring with `flags`; NULL with -errno in *err on failure.
dfly_ring *dfly_ring_create(unsigned entries, unsigned flags, int *err);
void dfly_ring_destroy(dfly_ring *ring);
/// Registers a provided-buffer ring of `count` buffers of `size` bytes at `memory` under group `bgid`; 0 or -errno.
int dfly_ring_setup_buffers(dfly_ring *ring, void *memory, unsigned count, unsigned size, int bgid);
/// Gives buffer `bid` back to the kernel.
void dfly_ring_recycle_buffer(dfly_ring *ring, void *addr, unsigned size, unsigned bid);
void dfly_ring_prep_accept_multishot(dfly_ring *ring, int fd, uint64_t user_data);
void dfly_ring_prep_recv_multishot(dfly_ring *ring, int fd, uint64_t user_data);
void dfly_ring_prep_send(dfly_ring *ring, int fd, const void *data, size_t length, uint64_t user_data);
void dfly_ring_prep_read(dfly_ring *ring, int fd, void *buffer, unsigned length, uint64_t user_data);
/// Cancels the request submitted with `target_user_data` (a multishot receive being detached).
void dfly_ring_prep_cancel(dfly_ring *ring, uint64_t target_user_data, uint64_t user_data);
/// Submits; with `wait`, blocks for one completion or `timeout_ns`; without, only flushes deferred task work.
int dfly_ring_submit(dfly_ring *ring, int wait, uint64_t timeout_ns);
/// Copies up to `max` completions into `out` and marks them seen.
unsigned dfly_ring_reap(dfly_ring *ring, dfly_cqe *out, unsigned max);

/// MIGRATE's connection to its target (net_client.c): connects within `timeout_ms`, then
/// leaves the socket blocking with that timeout on every send and receive. The fd or -errno.
int dfly_connect_tcp(const char *host, int port, int timeout_ms);
/// Sends all of `data`: 0, or -1 on an error or timeout.
int dfly_send_all(int fd, const void *data, size_t length);
/// Reads one reply line (up to '\n', without "\r\n", NUL-terminated, cut at `capacity - 1`):
/// its length, or -1 on an error, a timeout or a closed connection.
long dfly_read_line(int fd, char *line, size_t capacity);

#endif
