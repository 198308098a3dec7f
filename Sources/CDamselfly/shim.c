#define _GNU_SOURCE
#include "CDamselfly.h"
#include <liburing.h>
#include <xxhash.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <malloc.h>
#include <ctype.h>
#include <math.h>

uint64_t dfly_xxh64(const void *data, size_t length, uint64_t seed) {
    return XXH64(data, length, seed);
}

int dfly_pin_current_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

void dfly_set_thread_name(const char *name) {
    char buf[16];
    strncpy(buf, name, 15);
    buf[15] = 0;
    pthread_setname_np(pthread_self(), buf);
}

int dfly_available_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return (int)sysconf(_SC_NPROCESSORS_ONLN);
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

int dfly_gettid(void) { return (int)syscall(SYS_gettid); }

int dfly_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int dfly_eventfd_signal(int fd) {
    uint64_t one = 1;
    return (int)write(fd, &one, sizeof(one));
}

int dfly_eventfd_drain(int fd) {
    uint64_t value;
    return (int)read(fd, &value, sizeof(value));
}

uint64_t dfly_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t dfly_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t dfly_wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int dfly_listen_tcp(const char *host, int port, int backlog) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    int family;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        family = AF_INET6; a6->sin6_family = AF_INET6; a6->sin6_port = htons((uint16_t)port); len = sizeof(*a6);
    } else {
        family = AF_INET; a4->sin_family = AF_INET; a4->sin_port = htons((uint16_t)port); len = sizeof(*a4);
        if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
        if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) return -EINVAL;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) { int e = errno; close(fd); return -e; }
    if (listen(fd, backlog) != 0) { int e = errno; close(fd); return -e; }
    return fd;
}

int dfly_accept(int listen_fd) { return accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC); }

ssize_t dfly_recv(int fd, void *buf, size_t len) {
    return syscall(SYS_recvfrom, fd, buf, len, 0, NULL, NULL);
}

ssize_t dfly_send(int fd, const void *buf, size_t len) {
    return syscall(SYS_sendto, fd, buf, len, MSG_NOSIGNAL, NULL, 0);
}

int dfly_epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout) {
    /* epoll_pwait with no signal mask is epoll_wait (which some architectures lack). */
    return (int)syscall(SYS_epoll_pwait, epfd, events, maxevents, timeout, NULL, (size_t)8);
}

int dfly_socket_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void dfly_prepare_client_socket(int fd, int nonblocking, int keepalive_seconds) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (keepalive_seconds > 0) {
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &keepalive_seconds, sizeof(keepalive_seconds));
    }
    if (nonblocking) {
        int flags = fcntl(fd, F_GETFL, 0);
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    }
}

int dfly_peer_name(int fd, char *out, int outlen, int local) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int rc = local ? getsockname(fd, (struct sockaddr *)&ss, &len) : getpeername(fd, (struct sockaddr *)&ss, &len);
    if (rc != 0) { out[0] = 0; return 0; }
    char ip[INET6_ADDRSTRLEN];
    int port;
    if (ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    return snprintf(out, (size_t)outlen, "%s:%d", ip, port);
}

uint64_t dfly_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, resident = 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

uint64_t dfly_malloc_used(void) {
    struct mallinfo2 mi = mallinfo2();
    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

void dfly_cpu_usage(double *user, double *sys, int thread) {
    struct rusage ru;
    getrusage(thread ? RUSAGE_THREAD : RUSAGE_SELF, &ru);
    *user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    *sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int parse_long_double(const char *buf, size_t len, long double *out) {
    char tmp[5 * 1024];
    if (len == 0 || len >= sizeof(tmp)) return 0;
    memcpy(tmp, buf, len);
    tmp[len] = 0;
    if (isspace((unsigned char)tmp[0])) return 0;
    char *end;
    errno = 0;
    long double v = strtold(tmp, &end);
    if (end != tmp + len) return 0;
    if (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || fpclassify(v) == FP_ZERO)) return 0;
    if (isnan(v)) return 0;
    *out = v;
    return 1;
}

int dfly_incrbyfloat(const char *current, size_t current_len, const char *increment, size_t increment_len, char *out, size_t out_len) {
    long double value = 0, incr = 0;
    if (current && !parse_long_double(current, current_len, &value)) return -1;
    if (!parse_long_double(increment, increment_len, &incr)) return -2;
    value += incr;
    if (isnan(value) || isinf(value)) return -3;
    int l = snprintf(out, out_len, "%.17Lf", value);
    if (l < 0 || (size_t)l + 1 > out_len) return -3;
    if (strchr(out, '.') != NULL) {
        char *p = out + l - 1;
        while (*p == '0') { p--; l--; }
        if (*p == '.') l--;
    }
    if (l == 2 && out[0] == '-' && out[1] == '0') { out[0] = '0'; l = 1; }
    return l;
}

struct dfly_ring {
    struct io_uring ring;
    struct io_uring_buf_ring *buffers;
    unsigned buffer_count;
    int bgid;
};

dfly_ring *dfly_ring_create(unsigned entries, unsigned flags, int *err) {
    dfly_ring *r = calloc(1, sizeof(*r));
    struct io_uring_params params;
    memset(&params, 0, sizeof(params));
    params.flags = flags;
    int rc = io_uring_queue_init_params(entries, &r->ring, &params);
    if (rc < 0) { free(r); *err = rc; return NULL; }
    *err = 0;
    return r;
}

void dfly_ring_destroy(dfly_ring *r) {
    if (r->buffers) {
        io_uring_unregister_buf_ring(&r->ring, r->bgid);
        munmap(r->buffers, r->buffer_count * sizeof(struct io_uring_buf));
    }
    io_uring_queue_exit(&r->ring);
    free(r);
}

int dfly_ring_setup_buffers(dfly_ring *r, void *memory, unsigned count, unsigned size, int bgid) {
    size_t bytes = count * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) return -errno;
    struct io_uring_buf_ring *br = (struct io_uring_buf_ring *)mem;
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)br;
    reg.ring_entries = count;
    reg.bgid = (unsigned short)bgid;
    int rc = io_uring_register_buf_ring(&r->ring, &reg, 0);
    if (rc != 0) { munmap(mem, bytes); return rc; }
    r->buffers = br;
    r->buffer_count = count;
    r->bgid = bgid;
    int mask = io_uring_buf_ring_mask(count);
    for (unsigned i = 0; i < count; i++)
        io_uring_buf_ring_add(br, (char *)memory + (size_t)i * size, size, (unsigned short)i, mask, (int)i);
    io_uring_buf_ring_advance(br, (int)count);
    return 0;
}

void dfly_ring_recycle_buffer(dfly_ring *r, void *addr, unsigned size, unsigned bid) {
    io_uring_buf_ring_add(r->buffers, addr, size, (unsigned short)bid, io_uring_buf_ring_mask(r->buffer_count), 0);
    io_uring_buf_ring_advance(r->buffers, 1);
}

static struct io_uring_sqe *next_sqe(dfly_ring *r) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) {
        io_uring_submit(&r->ring);
        sqe = io_uring_get_sqe(&r->ring);
    }
    return sqe;
}

void dfly_ring_prep_accept_multishot(dfly_ring *r, int fd, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, user_data);
}

void dfly_ring_prep_recv_multishot(dfly_ring *r, int fd, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = (unsigned short)r->bgid;
    io_uring_sqe_set_data64(sqe, user_data);
}

void dfly_ring_prep_send(dfly_ring *r, int fd, const void *data, size_t length, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    io_uring_prep_send(sqe, fd, data, length, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, user_data);
}

void dfly_ring_prep_read(dfly_ring *r, int fd, void *buffer, unsigned length, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    io_uring_prep_read(sqe, fd, buffer, length, 0);
    io_uring_sqe_set_data64(sqe, user_data);
}

void dfly_ring_prep_cancel(dfly_ring *r, uint64_t target_user_data, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(r);
    io_uring_prep_cancel64(sqe, target_user_data, 0);
    io_uring_sqe_set_data64(sqe, user_data);
}

int dfly_ring_submit(dfly_ring *r, int wait, uint64_t timeout_ns) {
    if (!wait) return io_uring_submit_and_get_events(&r->ring);
    struct __kernel_timespec ts;
    ts.tv_sec = (long long)(timeout_ns / 1000000000ull);
    ts.tv_nsec = (long long)(timeout_ns % 1000000000ull);
    struct io_uring_cqe *cqe = NULL;
    return io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &ts, NULL);
}

unsigned dfly_ring_reap(dfly_ring *r, dfly_cqe *out, unsigned max) {
    struct io_uring_cqe *cqes[256];
    if (max > 256) max = 256;
    unsigned n = io_uring_peek_batch_cqe(&r->ring, cqes, max);
    for (unsigned i = 0; i < n; i++) {
        out[i].user_data = cqes[i]->user_data;
        out[i].res = cqes[i]->res;
        out[i].flags = cqes[i]->flags;
    }
    if (n) io_uring_cq_advance(&r->ring, n);
    return n;
}
