/*
 * The relay benchmark's load generator in C: the schedule of Phones.run in
 * bench_relay.py, without the interpreter's cost per packet, so that one core
 * can send and sink past 150,000 packets/s.
 *
 * usage: rtpload DURATION_S OUTDIR FD...
 *
 * The phones are the inherited UDP sockets FD... (bound, connected, with
 * SO_TIMESTAMPNS set by the Python side). Phone k sends a 172-octet RTP packet
 * every 20 ms, the phones' send times spread evenly over the period and sent
 * in bursts of at most MAX_BURST; the packet carries the send time
 * (CLOCK_REALTIME ns) and k, as bench_relay.HEADER packs them. Every socket is
 * sunk: the first 32 octets of each datagram and its kernel receive timestamp
 * go to OUTDIR/received.bin (32 + 16 octets a datagram), the lateness of each
 * send burst against the schedule to OUTDIR/lags.bin (int64 ns). After the
 * last send the sinks read on until DRAIN_S pass without a datagram, DRAIN_MAX_S
 * at most. A summary line goes to stdout:
 *   sent send_errors cpu_s run_delay_s wall_s start_wall_ns
 */

#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PACKET_SIZE 172
#define PTIME_NS 20000000LL
#define SAMPLES_PER_PACKET 160
#define MAX_BURST 256
#define RECV_BYTES 32
#define DRAIN_NS 500000000LL
#define DRAIN_MAX_NS 10000000000LL

static long long
clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double
run_delay_s(void)
{
    FILE *f = fopen("/proc/self/schedstat", "r");
    unsigned long long on_cpu = 0, waiting = 0;
    if (f == NULL)
        return 0.0;
    if (fscanf(f, "%llu %llu", &on_cpu, &waiting) != 2)
        waiting = 0;
    fclose(f);
    return (double)waiting / 1e9;
}

static double
cpu_s(void)
{
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
           (double)usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

static void
put32(unsigned char *p, uint32_t v)
{
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

static void
put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

int
main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: rtpload DURATION_S OUTDIR FD...\n");
        return 2;
    }
    double duration = atof(argv[1]);
    const char *outdir = argv[2];
    int count = argc - 3;
    int *fds = calloc((size_t)count, sizeof(int));
    long long *offsets = calloc((size_t)count, sizeof(long long));
    int epoll_fd = epoll_create1(0);
    if (fds == NULL || offsets == NULL || epoll_fd < 0) {
        perror("rtpload setup");
        return 1;
    }
    double slot = (double)PTIME_NS / count;
    for (int k = 0; k < count; k++) {
        fds[k] = atoi(argv[3 + k]);
        offsets[k] = (long long)(k * slot);
        struct epoll_event event = {.events = EPOLLIN, .data.u32 = (uint32_t)k};
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fds[k], &event) < 0) {
            perror("rtpload epoll_ctl");
            return 1;
        }
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/received.bin", outdir);
    FILE *received = fopen(path, "wb");
    snprintf(path, sizeof(path), "%s/lags.bin", outdir);
    FILE *lags = fopen(path, "wb");
    if (received == NULL || lags == NULL) {
        perror("rtpload output");
        return 1;
    }
    static char received_buffer[1 << 22], lags_buffer[1 << 16];
    setvbuf(received, received_buffer, _IOFBF, sizeof(received_buffer));
    setvbuf(lags, lags_buffer, _IOFBF, sizeof(lags_buffer));

    int max_events = count < 1024 ? count : 1024;
    struct epoll_event *events = calloc((size_t)max_events, sizeof(*events));
    unsigned char packet[PACKET_SIZE];
    memset(packet, 0, sizeof(packet));
    unsigned char head[RECV_BYTES];
    char control[CMSG_SPACE(sizeof(struct timespec))];
    struct iovec iov = {.iov_base = head, .iov_len = RECV_BYTES};

    long long sent = 0, send_errors = 0;
    double cpu0 = cpu_s(), delay0 = run_delay_s();
    long long start = clock_ns(CLOCK_MONOTONIC);
    long long start_wall = clock_ns(CLOCK_REALTIME);
    long long stop_sending = start + (long long)(duration * 1e9);
    long long stop = stop_sending + DRAIN_MAX_NS;
    long long give_up = stop;
    long long round_start = start, next_due = start, now = start;
    long long seq = 0;
    int k = 0, sending = 1;
    while (now < stop) {
        if (sending && next_due <= now) {
            long long lag = now - next_due;
            fwrite(&lag, sizeof(lag), 1, lags);
            int burst = 0;
            while (next_due <= now && burst < MAX_BURST) {
                burst += 1;
                packet[0] = 0x80;
                packet[1] = 0;
                packet[2] = (unsigned char)(seq >> 8);
                packet[3] = (unsigned char)seq;
                put32(packet + 4, (uint32_t)(seq * SAMPLES_PER_PACKET));
                put32(packet + 8, (uint32_t)(k + 1));
                put64(packet + 12, (uint64_t)clock_ns(CLOCK_REALTIME));
                put32(packet + 20, (uint32_t)k);
                if (send(fds[k], packet, PACKET_SIZE, MSG_DONTWAIT) >= 0)
                    sent += 1;
                else
                    send_errors += 1;
                k += 1;
                if (k == count) {
                    k = 0;
                    seq += 1;
                    round_start += PTIME_NS;
                    if (round_start >= stop_sending) {
                        sending = 0;
                        give_up = clock_ns(CLOCK_MONOTONIC) + DRAIN_MAX_NS;
                        stop = clock_ns(CLOCK_MONOTONIC) + DRAIN_NS;
                        break;
                    }
                }
                next_due = round_start + offsets[k];
            }
            now = clock_ns(CLOCK_MONOTONIC);
        }
        long long wait_ns = sending ? next_due - now : stop - now;
        int timeout_ms = wait_ns > 0 ? (int)((wait_ns + 999999) / 1000000) : 0;
        int ready = epoll_wait(epoll_fd, events, max_events, timeout_ms);
        for (int i = 0; i < ready; i++) {
            struct msghdr message = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = control,
                .msg_controllen = sizeof(control),
            };
            ssize_t got = recvmsg(fds[events[i].data.u32], &message, MSG_DONTWAIT);
            if (got < RECV_BYTES)
                continue; /* an error, a refusal, or not a generator packet */
            struct timespec stamp = {0, 0};
            struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message);
            if (cmsg != NULL && cmsg->cmsg_level == SOL_SOCKET &&
                cmsg->cmsg_type == SCM_TIMESTAMPNS)
                memcpy(&stamp, CMSG_DATA(cmsg), sizeof(stamp));
            else
                clock_gettime(CLOCK_REALTIME, &stamp);
            int64_t times[2] = {stamp.tv_sec, stamp.tv_nsec};
            fwrite(head, RECV_BYTES, 1, received);
            fwrite(times, sizeof(times), 1, received);
        }
        now = clock_ns(CLOCK_MONOTONIC);
        if (!sending && ready > 0) { /* still arriving: keep draining */
            long long until = now + DRAIN_NS;
            if (until > stop)
                stop = until;
            if (stop > give_up)
                stop = give_up;
        }
    }
    double wall = (now - start) / 1e9;
    double cpu = cpu_s() - cpu0, delay = run_delay_s() - delay0;
    if (fclose(received) != 0 || fclose(lags) != 0) {
        perror("rtpload output");
        return 1;
    }
    printf("%lld %lld %.6f %.6f %.6f %lld\n", sent, send_errors, cpu, delay, wall, start_wall);
    return 0;
}
