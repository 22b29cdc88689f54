/* bare_mhd.c — the ceiling of this machine's HTTP path for bench/http.sh: a
 * libmicrohttpd server that answers every request with the same constant
 * 201 JSON reply, doing no other work.
 *
 * It runs MHD exactly as payi's server does (src/http/http.c, http_start):
 * MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME
 * with a pool of one thread per CPU, on a listening socket we bind ourselves
 * (SO_REUSEADDR, backlog 1024), the same connection limit (1024), idle
 * timeout (30 s) and per-connection memory limit (16 KiB).  A request body is
 * read in full and dropped (like payi, it must be consumed before answering).
 * The reply has payi's Content-Type and about the size of payi's 201 ack.
 *
 * Usage: bare_mhd HOST PORT    (PORT 0: any free port)
 * Prints "bare: listening on http://HOST:PORT" on stderr once ready; stops on
 * SIGINT/SIGTERM.
 * Built by bench/http.sh: cc -O2 bare_mhd.c $(pkg-config --cflags --libs libmicrohttpd)
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Same shape and length (125 bytes) as payi's answer to one appended event. */
static const char REPLY[] =
    "{\"position\":0,\"stream\":\"s-001\",\"version\":0,\"events\":[{\"position\":0,\"version\":0,"
    "\"id\":\"00000000-0000-4000-8000-000000000000\"}]}";

static struct MHD_Response *reply;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
    if (*req_cls == NULL) {            /* headers only: ask for the body */
        *req_cls = (void *)1;
        return MHD_YES;
    }
    if (*upload_data_size) {           /* a piece of body: drop it */
        *upload_data_size = 0;
        return MHD_YES;
    }
    return MHD_queue_response(c, MHD_HTTP_CREATED, reply);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bare_mhd HOST PORT\n");
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "bare: bad IPv4 address %s\n", argv[1]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0) {
        perror("bare: cannot listen");
        return 1;
    }
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        perror("bare: getsockname");
        return 1;
    }
    reply = MHD_create_response_from_buffer(sizeof REPLY - 1, (void *)REPLY, MHD_RESPMEM_PERSISTENT);
    if (!reply || MHD_add_response_header(reply, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES) {
        fprintf(stderr, "bare: cannot build the reply\n");
        return 1;
    }
    /* SIGINT/SIGTERM blocked in every thread (MHD's inherit the mask) and
     * taken by sigwait below. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = cpus < 1 ? 1 : cpus > 64 ? 64 : (unsigned)cpus;
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, on_request, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, 1024u,
        MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16u << 10), MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "bare: cannot start libmicrohttpd\n");
        return 1;
    }
    fprintf(stderr, "bare: listening on http://%s:%u\n", argv[1], (unsigned)ntohs(sa.sin_port));
    int sig;
    sigwait(&sigs, &sig);
    MHD_socket lfd = MHD_quiesce_daemon(d);
    MHD_stop_daemon(d);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    MHD_destroy_response(reply);
    fprintf(stderr, "bare: stopped\n");
    return 0;
}
