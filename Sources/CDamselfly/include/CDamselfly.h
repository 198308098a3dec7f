#ifndef CDAMSELFLY_H
#define CDAMSELFLY_H

/// C shim for what Glibc's Swift overlay does not offer: liburing (its many
/// static inline helpers are importable as they are), XXH64, thread affinity
/// and names, eventfd and a couple of socket and clock helpers.

#include <liburing.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/// XXH64 of a byte range with a seed (libxxhash).
uint64_t dfly_xxh64(const void *data, size_t length, uint64_t seed);

/// Pins the calling thread to one CPU; returns 0 on success.
int dfly_pin_current_thread(int cpu);
/// Names the calling thread (at most 15 characters are kept).
void dfly_set_thread_name(const char *name);
/// The number of CPUs this process may run on (sched_getaffinity).
int dfly_available_cpus(void);
/// The kernel thread id of the caller.
int dfly_gettid(void);

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

/// Wraps io_uring_peek_batch_cqe for Swift.
unsigned dfly_peek_cqes(struct io_uring *ring, struct io_uring_cqe **cqes, unsigned count);
/// Allocates and registers a provided-buffer ring; returns the ring or NULL (errno in *err).
struct io_uring_buf_ring *dfly_setup_buf_ring(struct io_uring *ring, unsigned entries, int bgid, int *err);
void dfly_free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br, unsigned entries, int bgid);

#endif
