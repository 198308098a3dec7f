/* A blocking client connection for MIGRATE: Redis's migrateCommand talks to the
 * target synchronously, every step bounded by the command's timeout. Only a
 * connect that fails at once (no such host, no route) is a connect error. */
#define _GNU_SOURCE
#include "CDamselfly.h"
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int dfly_connect_tcp(const char *host, int port, int timeout_ms) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    if (getaddrinfo(host, service, &hints, &res) != 0) return -EHOSTUNREACH;
    int result = -ECONNREFUSED;
    for (struct addrinfo *p = res; p; p = p->ai_next) {
        int fd = socket(p->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) { result = -errno; continue; }
        if (connect(fd, p->ai_addr, p->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) { result = -errno; close(fd); continue; }
            /* As Redis's connSocketBlockingConnect: wait for the connection up to the
             * timeout, but a refused or unfinished one is not a connect error: the
             * first send fails instead ("error or timeout writing to target"). */
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };
            (void)poll(&pfd, 1, timeout_ms);
        }
        /* Blocking from here on, each send and receive bounded by the timeout. */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        result = fd;
        break;
    }
    freeaddrinfo(res);
    return result;
}

int dfly_send_all(int fd, const void *data, size_t length) {
    const char *p = data;
    while (length > 0) {
        ssize_t n = send(fd, p, length, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        length -= (size_t)n;
    }
    return 0;
}

long dfly_read_line(int fd, char *line, size_t capacity) {
    size_t used = 0;
    while (used + 1 < capacity) {
        char c;
        ssize_t n = recv(fd, &c, 1, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        if (c == '\n') {
            if (used > 0 && line[used - 1] == '\r') used--;
            line[used] = 0;
            return (long)used;
        }
        line[used++] = c;
    }
    line[used] = 0;
    return (long)used;
}
