/*
 * The relay's native forwarder: latched RTP lanes served by one thread that
 * never takes the GIL.
 *
 * A lane is one direction of one stream: datagrams read from a flow socket
 * (connected to the latched party, so the kernel has already matched their
 * source, see gateway/media/forward.py) leave toward the other party by that
 * party's flow socket (send) or by its side's RTP socket to an address
 * (sendto). The lane does what RtpReceiver.relay does per packet, in the same
 * order and with the same counting:
 *
 *   - not RTP or RTCP (first two bits not 2; RFC 7983 7): forwarded, not
 *     accounted;
 *   - RTCP multiplexed on the RTP port (second octet 192-223; RFC 5761 4):
 *     onward by the RTCP route;
 *   - RTP: forwarded; when it left, the other side's packets_out/bytes_out
 *     count it; then, if it holds the 12-octet fixed header, the sender's
 *     statistics take it: counters, RFC 3550 A.1 sequence tracking, A.3 loss
 *     and the A.8 interarrival jitter, computed exactly as
 *     gateway.media.stats.StreamStats.update computes them (update_state
 *     below exposes the kernel so the tests can hold the two side by side).
 *
 * The thread waits on one epoll set. Its event data names a lane by slot and
 * generation; the thread serves each ready lane under the engine's mutex and
 * drops an event whose slot was emptied or reused meanwhile, so a lane
 * detached from Python is never touched again. A lane works on duplicates of
 * the descriptors it was given, closed when it is detached: a socket Python
 * closes while a lane still names it can never make the thread read or write
 * whatever else the kernel gives that number next. Python calls take the mutex
 * with the GIL held (see lock_engine).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RTP_SEQ_MOD 65536LL
#define MAX_DROPOUT 3000
#define MAX_MISORDER 100
#define TIMESTAMP_SPACE 4294967296.0
#define HALF_TIMESTAMP_SPACE 2147483648.0
#define BATCH 8           /* datagrams read per wakeup of a lane */
#define RECV_SIZE 65536   /* no UDP datagram is larger: none is truncated */
#define MAX_EVENTS 256
#define WAKE_TOKEN UINT64_MAX

/* ---------------------------------------------------------------- statistics */

/* The state of gateway.media.stats.StreamStats, field for field (STATE_FIELDS there). */
typedef struct {
    long long packets_in;
    long long bytes_in;
    double last_packet_at; /* NaN: none yet */
    long long ssrc;        /* -1: none yet */
    long long run_start;
    long long base_seq;
    long long max_seq;
    long long cycles;
    long long bad_seq;
    double transit;
    long long not_received;
    long long expected_prior;
    long long received_prior;
    double jitter;
    long long clock_rate;
} rtp_state;

#define STATE_FORMAT "LLdLLLLLLdLLLdL"

static int
state_from_tuple(PyObject *tuple, rtp_state *s)
{
    return PyArg_ParseTuple(tuple, STATE_FORMAT ";a StreamStats state tuple", &s->packets_in,
                            &s->bytes_in, &s->last_packet_at, &s->ssrc, &s->run_start,
                            &s->base_seq, &s->max_seq, &s->cycles, &s->bad_seq, &s->transit,
                            &s->not_received, &s->expected_prior, &s->received_prior,
                            &s->jitter, &s->clock_rate);
}

static PyObject *
state_to_tuple(const rtp_state *s)
{
    return Py_BuildValue("(" STATE_FORMAT ")", s->packets_in, s->bytes_in, s->last_packet_at,
                         s->ssrc, s->run_start, s->base_seq, s->max_seq, s->cycles, s->bad_seq,
                         s->transit, s->not_received, s->expected_prior, s->received_prior,
                         s->jitter, s->clock_rate);
}

/* init_seq of RFC 3550 A.1: close the current run of sequence numbers, start one. */
static void
restart_run(rtp_state *s, long long seq)
{
    if (s->run_start >= 0) {
        s->expected_prior += s->cycles + s->max_seq - s->base_seq + 1;
        s->received_prior += s->packets_in - 1 - s->run_start - s->not_received;
    }
    s->run_start = s->packets_in - 1;
    s->base_seq = seq;
    s->max_seq = seq;
    s->cycles = 0;
    s->bad_seq = RTP_SEQ_MOD + 1;
    s->not_received = 0;
}

/* StreamStats.update: one RTP packet of at least 12 octets, received at arrival. */
static void
account(rtp_state *s, const unsigned char *p, Py_ssize_t len, double arrival)
{
    long long seq = ((long long)p[2] << 8) | p[3];
    uint32_t timestamp = ((uint32_t)p[4] << 24) | ((uint32_t)p[5] << 16) |
                         ((uint32_t)p[6] << 8) | p[7];
    long long ssrc = ((long long)p[8] << 24) | ((long long)p[9] << 16) |
                     ((long long)p[10] << 8) | p[11];
    s->packets_in += 1;
    s->bytes_in += len;
    s->last_packet_at = arrival;
    double transit = arrival * (double)s->clock_rate - (double)timestamp;
    if (ssrc != s->ssrc) { /* a new SSRC (RFC 3550 8.2) */
        s->ssrc = ssrc;
        restart_run(s, seq);
        s->transit = transit;
        return;
    }
    long long delta = (seq - s->max_seq) & 0xFFFF;
    if (delta < MAX_DROPOUT) {
        if (seq < s->max_seq)
            s->cycles += RTP_SEQ_MOD;
        s->max_seq = seq;
    }
    else if (delta <= RTP_SEQ_MOD - MAX_MISORDER) {
        if (seq != s->bad_seq) {
            s->bad_seq = (seq + 1) & 0xFFFF;
            s->not_received += 1;
            return;
        }
        restart_run(s, seq);
        s->transit = transit;
        return;
    }
    double d = transit - s->transit;
    s->transit = transit;
    if (d < 0)
        d = -d;
    if (d > HALF_TIMESTAMP_SPACE) { /* the 32-bit timestamp wrapped between the two */
        d = fmod(d, TIMESTAMP_SPACE);
        if (d > HALF_TIMESTAMP_SPACE)
            d = TIMESTAMP_SPACE - d;
    }
    s->jitter += (d - s->jitter) * 0.0625;
}

/* ---------------------------------------------------------------- lanes */

typedef struct {
    int fd; /* -1: no route, the packet is dropped */
    int has_addr; /* 0: a connected socket, send(); 1: sendto(addr) */
    struct sockaddr_storage addr;
    socklen_t addr_len;
} route;

typedef struct {
    uint32_t generation;
    int in_fd;
    route rtp;
    route rtcp;
    rtp_state state;
    long long packets_in_taken; /* state.packets_in and bytes_in at the last poll */
    long long bytes_in_taken;
    /* since the last poll */
    long long packets_out;
    long long bytes_out;
    long long send_errors;
    long long errors;
} lane;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mutex;
    pthread_t thread;
    int thread_started;
    int closed;
    int epoll_fd;
    int wake_fd;
    lane **slots;
    uint32_t *generations;
    Py_ssize_t capacity;
    Py_ssize_t active;
    /* what the lanes relayed that no poll or detach has taken yet, over every lane */
    long long pending_in;
    long long pending_bytes_in;
    long long pending_out;
    long long pending_bytes_out;
    long long relayed; /* RTP packets the lanes sent, since the engine started */
    unsigned char *buffers; /* the thread's: BATCH * RECV_SIZE */
    atomic_int waiters;     /* Python calls waiting for the mutex */
} Engine;

static double
monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Send one datagram by a route: 1 when it left. A connected socket may report a refusal
 * (ICMP) of an earlier datagram on this send, which clears it without sending: once more. */
static int
emit(lane *l, const route *r, const unsigned char *data, size_t len)
{
    ssize_t sent;
    if (r->fd < 0)
        return 0;
    if (r->has_addr) {
        sent = sendto(r->fd, data, len, MSG_DONTWAIT, (const struct sockaddr *)&r->addr,
                      r->addr_len);
    }
    else {
        sent = send(r->fd, data, len, MSG_DONTWAIT);
        if (sent < 0 && errno == ECONNREFUSED)
            sent = send(r->fd, data, len, MSG_DONTWAIT);
    }
    if (sent < 0) {
        l->send_errors += 1;
        return 0;
    }
    return 1;
}

/* One datagram of the latched party: RtpReceiver.relay. */
static void
relay_one(lane *l, const unsigned char *data, size_t len)
{
    if (len == 0)
        return;
    if ((data[0] >> 6) != 2) { /* STUN, DTLS, ZRTP (RFC 7983): forwarded, not accounted */
        emit(l, &l->rtp, data, len);
        return;
    }
    if (len < 2)
        return;
    if (data[1] > 191 && data[1] < 224) { /* RTCP on the RTP port (RFC 5761 4) */
        emit(l, &l->rtcp, data, len);
        return;
    }
    if (emit(l, &l->rtp, data, len)) {
        l->packets_out += 1;
        l->bytes_out += (long long)len;
    }
    if (len < 12)
        return; /* shorter than the fixed header: relayed, not accounted */
    /* stamped after the send, as RtpReceiver.relay stamps it */
    account(&l->state, data, (Py_ssize_t)len, monotonic_now());
}

static void
serve_lane(Engine *engine, lane *l, struct mmsghdr *messages)
{
    int received = recvmmsg(l->in_fd, messages, BATCH, MSG_DONTWAIT, NULL);
    if (received < 0) {
        /* ECONNREFUSED: a refusal (ICMP) of what was sent to the party, cleared by this
         * read; the datagrams behind it wake the lane again */
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNREFUSED)
            l->errors += 1;
        return;
    }
    long long in_before = l->state.packets_in, bytes_in_before = l->state.bytes_in;
    long long out_before = l->packets_out, bytes_out_before = l->bytes_out;
    for (int i = 0; i < received; i++) {
        if (messages[i].msg_hdr.msg_flags & MSG_TRUNC) {
            l->errors += 1;
            continue;
        }
        relay_one(l, messages[i].msg_hdr.msg_iov->iov_base, messages[i].msg_len);
    }
    engine->pending_in += l->state.packets_in - in_before;
    engine->pending_bytes_in += l->state.bytes_in - bytes_in_before;
    engine->pending_out += l->packets_out - out_before;
    engine->relayed += l->packets_out - out_before;
    engine->pending_bytes_out += l->bytes_out - bytes_out_before;
}

static void *
engine_thread(void *arg)
{
    Engine *self = (Engine *)arg;
    struct epoll_event events[MAX_EVENTS];
    struct mmsghdr messages[BATCH];
    struct iovec iovecs[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iovecs[i].iov_base = self->buffers + (size_t)i * RECV_SIZE;
        iovecs[i].iov_len = RECV_SIZE;
        memset(&messages[i], 0, sizeof(messages[i]));
        messages[i].msg_hdr.msg_iov = &iovecs[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    for (;;) {
        int ready = epoll_wait(self->epoll_fd, events, MAX_EVENTS, -1);
        if (ready < 0) {
            if (errno != EINTR) { /* never seen; do not spin on it, do not give up */
                struct timespec pause = {0, 1000000};
                nanosleep(&pause, NULL);
            }
            pthread_mutex_lock(&self->mutex);
            int closed = self->closed;
            pthread_mutex_unlock(&self->mutex);
            if (closed)
                break;
            continue;
        }
        int stop = 0;
        for (int i = 0; i < ready && !stop; i++) {
            uint64_t token = events[i].data.u64;
            /* one lane at a time under the mutex: a Python call waits for one lane's
             * datagrams at most, never for a whole wakeup's */
            pthread_mutex_lock(&self->mutex);
            stop = self->closed;
            if (token != WAKE_TOKEN && !stop) {
                Py_ssize_t slot = (Py_ssize_t)(token & 0xFFFFFFFFu);
                uint32_t generation = (uint32_t)(token >> 32);
                lane *l = slot < self->capacity ? self->slots[slot] : NULL;
                if (l != NULL && l->generation == generation) /* else detached meanwhile */
                    serve_lane(self, l, messages);
            }
            pthread_mutex_unlock(&self->mutex);
            /* glibc's mutex is not fair: a Python call waiting for it gets it now,
             * not after the rest of the wakeup's lanes */
            while (atomic_load_explicit(&self->waiters, memory_order_acquire) > 0)
                sched_yield();
        }
        if (stop)
            break;
    }
    return NULL;
}

/* The mutex, for a Python call: taken with the GIL held. The thread holds it for one
 * lane's datagrams at a time and never takes the GIL, so the wait is short and cannot
 * deadlock; releasing the GIL here instead would hand it to another Python thread and
 * keep the event loop waiting for it back (up to the switch interval, 5 ms). */
static void
lock_engine(Engine *self)
{
    if (pthread_mutex_trylock(&self->mutex) == 0)
        return;
    atomic_fetch_add_explicit(&self->waiters, 1, memory_order_acq_rel);
    pthread_mutex_lock(&self->mutex);
    atomic_fetch_sub_explicit(&self->waiters, 1, memory_order_acq_rel);
}

/* ---------------------------------------------------------------- Python side */

/* An address as the event loop gives it, (host, port) or (host, port, flow, scope), or
 * None for a connected socket. */
static int
route_from(PyObject *fd_obj, PyObject *address, int family, route *r)
{
    memset(r, 0, sizeof(*r));
    long fd = PyLong_AsLong(fd_obj);
    if (fd == -1 && PyErr_Occurred())
        return -1;
    if (fd < -1 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "not a file descriptor: %ld", fd);
        return -1;
    }
    r->fd = (int)fd;
    if (r->fd < 0 || address == Py_None) {
        r->has_addr = 0;
        return 0;
    }
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope = 0;
    if (!PyArg_ParseTuple(address, "si|II;a socket address (host, port[, flow, scope])", &host,
                          &port, &flowinfo, &scope))
        return -1;
    if (port < 0 || port > 65535) {
        PyErr_Format(PyExc_ValueError, "port out of range: %d", port);
        return -1;
    }
    r->has_addr = 1;
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&r->addr;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
            PyErr_Format(PyExc_ValueError, "not an IPv4 address: %s", host);
            return -1;
        }
        r->addr_len = sizeof(*sin);
    }
    else if (family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&r->addr;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        sin6->sin6_flowinfo = htonl(flowinfo);
        sin6->sin6_scope_id = scope;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            PyErr_Format(PyExc_ValueError, "not an IPv6 address: %s", host);
            return -1;
        }
        r->addr_len = sizeof(*sin6);
    }
    else {
        PyErr_Format(PyExc_ValueError, "address family %d is neither IPv4 nor IPv6", family);
        return -1;
    }
    return 0;
}

static int
start_thread(Engine *self)
{
    if (self->thread_started)
        return 0;
    if (self->buffers == NULL) {
        self->buffers = PyMem_RawMalloc((size_t)BATCH * RECV_SIZE);
        if (self->buffers == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    int err = pthread_create(&self->thread, NULL, engine_thread, self);
    if (err != 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->thread_started = 1;
    return 0;
}

static int
grow_slots(Engine *self)
{
    Py_ssize_t capacity = self->capacity ? self->capacity * 2 : 64;
    if (capacity > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_OverflowError, "too many lanes");
        return -1;
    }
    lane **slots = PyMem_RawRealloc(self->slots, (size_t)capacity * sizeof(lane *));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->slots = slots;
    uint32_t *generations =
        PyMem_RawRealloc(self->generations, (size_t)capacity * sizeof(uint32_t));
    if (generations == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->generations = generations;
    for (Py_ssize_t i = self->capacity; i < capacity; i++) {
        slots[i] = NULL;
        generations[i] = 0;
    }
    self->capacity = capacity;
    return 0;
}

/* A lane's own copy of a descriptor (-1 stays -1); -1 with errno set on failure. */
static int
own_descriptor(int fd)
{
    return fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

/* Close a lane's descriptors and free it. */
static void
lane_free(lane *l)
{
    if (l->in_fd >= 0)
        close(l->in_fd);
    if (l->rtp.fd >= 0)
        close(l->rtp.fd);
    if (l->rtcp.fd >= 0)
        close(l->rtcp.fd);
    PyMem_RawFree(l);
}

static PyObject *
Engine_attach(Engine *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"in_fd", "family", "rtp_fd", "rtp_address",
                               "rtcp_fd", "rtcp_address", "state", NULL};
    int in_fd, family;
    PyObject *rtp_fd, *rtp_address, *rtcp_fd, *rtcp_address, *state;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iiOOOOO!:attach", keywords, &in_fd, &family,
                                     &rtp_fd, &rtp_address, &rtcp_fd, &rtcp_address,
                                     &PyTuple_Type, &state))
        return NULL;
    if (in_fd < 0)
        return PyErr_Format(PyExc_ValueError, "not a file descriptor: %d", in_fd);
    route rtp, rtcp; /* with the caller's descriptors, until the lane has its own */
    rtp_state initial;
    if (route_from(rtp_fd, rtp_address, family, &rtp) < 0 ||
        route_from(rtcp_fd, rtcp_address, family, &rtcp) < 0 ||
        state_from_tuple(state, &initial) < 0)
        return NULL;
    if (initial.clock_rate <= 0)
        return PyErr_Format(PyExc_ValueError, "RTP clock rate must be positive");
    lane *l = PyMem_RawCalloc(1, sizeof(lane));
    if (l == NULL)
        return PyErr_NoMemory();
    l->rtp = rtp;
    l->rtcp = rtcp;
    l->state = initial;
    l->packets_in_taken = initial.packets_in;
    l->bytes_in_taken = initial.bytes_in;
    l->in_fd = own_descriptor(in_fd);
    l->rtp.fd = own_descriptor(rtp.fd);
    l->rtcp.fd = own_descriptor(rtcp.fd);
    if (l->in_fd < 0 || (rtp.fd >= 0 && l->rtp.fd < 0) || (rtcp.fd >= 0 && l->rtcp.fd < 0)) {
        PyErr_SetFromErrno(PyExc_OSError);
        lane_free(l);
        return NULL;
    }
    lock_engine(self);
    if (self->closed) {
        pthread_mutex_unlock(&self->mutex);
        lane_free(l);
        PyErr_SetString(PyExc_RuntimeError, "the fast path is closed");
        return NULL;
    }
    Py_ssize_t slot = 0;
    while (slot < self->capacity && self->slots[slot] != NULL)
        slot++;
    if (slot == self->capacity && grow_slots(self) < 0) {
        pthread_mutex_unlock(&self->mutex);
        lane_free(l);
        return NULL;
    }
    l->generation = ++self->generations[slot];
    struct epoll_event event;
    memset(&event, 0, sizeof(event));
    event.events = EPOLLIN;
    event.data.u64 = ((uint64_t)l->generation << 32) | (uint64_t)slot;
    if (epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, l->in_fd, &event) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        pthread_mutex_unlock(&self->mutex);
        lane_free(l);
        return NULL;
    }
    self->slots[slot] = l;
    self->active += 1;
    if (start_thread(self) < 0) {
        epoll_ctl(self->epoll_fd, EPOLL_CTL_DEL, l->in_fd, NULL);
        self->slots[slot] = NULL;
        self->active -= 1;
        pthread_mutex_unlock(&self->mutex);
        lane_free(l);
        return NULL;
    }
    pthread_mutex_unlock(&self->mutex);
    return PyLong_FromUnsignedLongLong(event.data.u64);
}

/* The lane a handle names, with the mutex held; NULL (mutex released, error set) if none. */
static lane *
locked_lane(Engine *self, PyObject *handle_obj, Py_ssize_t *slot_out)
{
    unsigned long long handle = PyLong_AsUnsignedLongLong(handle_obj);
    if (handle == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t slot = (Py_ssize_t)(handle & 0xFFFFFFFFu);
    uint32_t generation = (uint32_t)(handle >> 32);
    lock_engine(self);
    lane *l = slot < self->capacity ? self->slots[slot] : NULL;
    if (l == NULL || l->generation != generation) {
        pthread_mutex_unlock(&self->mutex);
        PyErr_Format(PyExc_KeyError, "no lane %llu", handle);
        return NULL;
    }
    *slot_out = slot;
    return l;
}

/* Take a lane's counts with the mutex held: copy them out, zero the counts since the last
 * poll, and no longer count them as pending. */
static void
take_locked(Engine *self, lane *l, lane *copy)
{
    *copy = *l;
    self->pending_in -= l->state.packets_in - l->packets_in_taken;
    self->pending_bytes_in -= l->state.bytes_in - l->bytes_in_taken;
    self->pending_out -= l->packets_out;
    self->pending_bytes_out -= l->bytes_out;
    l->packets_in_taken = l->state.packets_in;
    l->bytes_in_taken = l->state.bytes_in;
    l->packets_out = l->bytes_out = l->send_errors = l->errors = 0;
}

/* (state tuple, packets_out, bytes_out, send_errors, errors) of a taken copy. */
static PyObject *
counts_tuple(const lane *copy)
{
    PyObject *state_tuple = state_to_tuple(&copy->state);
    if (state_tuple == NULL)
        return NULL;
    return Py_BuildValue("(NLLLL)", state_tuple, copy->packets_out, copy->bytes_out,
                         copy->send_errors, copy->errors);
}

static PyObject *
Engine_poll(Engine *self, PyObject *handle)
{
    Py_ssize_t slot;
    lane copy;
    lane *l = locked_lane(self, handle, &slot);
    if (l == NULL)
        return NULL;
    take_locked(self, l, &copy);
    pthread_mutex_unlock(&self->mutex);
    return counts_tuple(&copy);
}

static PyObject *
Engine_last_packet_at(Engine *self, PyObject *handle)
{
    Py_ssize_t slot;
    lane *l = locked_lane(self, handle, &slot);
    if (l == NULL)
        return NULL;
    double last = l->state.last_packet_at;
    pthread_mutex_unlock(&self->mutex);
    return PyFloat_FromDouble(last);
}

static PyObject *
Engine_pending(Engine *self, PyObject *Py_UNUSED(ignored))
{
    lock_engine(self);
    long long in = self->pending_in, bytes_in = self->pending_bytes_in;
    long long out = self->pending_out, bytes_out = self->pending_bytes_out;
    pthread_mutex_unlock(&self->mutex);
    return Py_BuildValue("(LLLL)", in, bytes_in, out, bytes_out);
}

static PyObject *
Engine_detach(Engine *self, PyObject *handle)
{
    Py_ssize_t slot;
    lane *l = locked_lane(self, handle, &slot);
    if (l == NULL)
        return NULL;
    epoll_ctl(self->epoll_fd, EPOLL_CTL_DEL, l->in_fd, NULL);
    self->slots[slot] = NULL;
    self->active -= 1;
    lane copy;
    take_locked(self, l, &copy);
    pthread_mutex_unlock(&self->mutex);
    lane_free(l);
    return counts_tuple(&copy);
}

/* Stop the thread and free every lane. Called with the GIL held (close, dealloc), so
 * no other Python call runs meanwhile; the thread never takes the GIL and leaves at its
 * next lane or wakeup, so the join is short. */
static void
engine_shutdown(Engine *self)
{
    pthread_mutex_lock(&self->mutex);
    self->closed = 1;
    pthread_mutex_unlock(&self->mutex);
    if (self->thread_started) {
        uint64_t one = 1;
        ssize_t ignored = write(self->wake_fd, &one, sizeof(one));
        (void)ignored;
        pthread_join(self->thread, NULL);
        self->thread_started = 0;
    }
    pthread_mutex_lock(&self->mutex);
    for (Py_ssize_t i = 0; i < self->capacity; i++) {
        if (self->slots[i] != NULL) {
            epoll_ctl(self->epoll_fd, EPOLL_CTL_DEL, self->slots[i]->in_fd, NULL);
            lane_free(self->slots[i]);
            self->slots[i] = NULL;
        }
    }
    self->active = 0;
    self->pending_in = self->pending_bytes_in = self->pending_out = self->pending_bytes_out = 0;
    pthread_mutex_unlock(&self->mutex);
}

static PyObject *
Engine_close(Engine *self, PyObject *Py_UNUSED(ignored))
{
    engine_shutdown(self);
    Py_RETURN_NONE;
}

static PyObject *
Engine_get_lanes(Engine *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->active);
}

static PyObject *
Engine_get_relayed(Engine *self, void *Py_UNUSED(closure))
{
    lock_engine(self);
    long long relayed = self->relayed;
    pthread_mutex_unlock(&self->mutex);
    return PyLong_FromLongLong(relayed);
}

static PyObject *
Engine_get_closed(Engine *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->closed);
}

static int
Engine_init(Engine *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, ":Engine", keywords))
        return -1;
    if (self->epoll_fd >= 0) {
        PyErr_SetString(PyExc_RuntimeError, "Engine is already initialised");
        return -1;
    }
    self->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (self->epoll_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (self->wake_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    struct epoll_event event;
    memset(&event, 0, sizeof(event));
    event.events = EPOLLIN;
    event.data.u64 = WAKE_TOKEN;
    if (epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, self->wake_fd, &event) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static PyObject *
Engine_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Engine *self = (Engine *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    pthread_mutex_init(&self->mutex, NULL);
    self->epoll_fd = -1;
    self->wake_fd = -1;
    return (PyObject *)self;
}

static void
Engine_dealloc(Engine *self)
{
    engine_shutdown(self);
    if (self->epoll_fd >= 0)
        close(self->epoll_fd);
    if (self->wake_fd >= 0)
        close(self->wake_fd);
    PyMem_RawFree(self->slots);
    PyMem_RawFree(self->generations);
    PyMem_RawFree(self->buffers);
    pthread_mutex_destroy(&self->mutex);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Engine_methods[] = {
    {"attach", (PyCFunction)(void (*)(void))Engine_attach, METH_VARARGS | METH_KEYWORDS,
     "attach(in_fd, family, rtp_fd, rtp_address, rtcp_fd, rtcp_address, state) -> handle\n\n"
     "Serve the datagrams of in_fd (a socket connected to the latched party) from now on.\n"
     "A route is a descriptor (-1: none) and an address (None: the socket is connected).\n"
     "state: the sender's StreamStats state tuple."},
    {"poll", (PyCFunction)Engine_poll, METH_O,
     "poll(handle) -> (state, packets_out, bytes_out, send_errors, errors)\n\n"
     "The sender's statistics now, and the counts since the last poll or attach."},
    {"last_packet_at", (PyCFunction)Engine_last_packet_at, METH_O,
     "last_packet_at(handle) -> float\n\n"
     "When the lane last accounted an RTP packet (the arrivals' clock; NaN: never)."},
    {"pending", (PyCFunction)Engine_pending, METH_NOARGS,
     "pending() -> (packets_in, bytes_in, packets_out, bytes_out)\n\n"
     "What the lanes relayed that no poll or detach has handed over yet."},
    {"detach", (PyCFunction)Engine_detach, METH_O,
     "detach(handle) -> as poll\n\n"
     "Stop serving the lane; once this returns its descriptors are the caller's alone."},
    {"close", (PyCFunction)Engine_close, METH_NOARGS,
     "Detach every lane and stop the thread."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Engine_getset[] = {
    {"lanes", (getter)Engine_get_lanes, NULL, "Lanes attached now.", NULL},
    {"closed", (getter)Engine_get_closed, NULL, "Whether close() was called.", NULL},
    {"relayed", (getter)Engine_get_relayed, NULL,
     "RTP packets the lanes sent since the engine started.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gateway.media._fastpath.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The native forwarder: one thread serving attached lanes without the GIL.",
    .tp_new = Engine_new,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
    .tp_getset = Engine_getset,
};

static PyObject *
update_state(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *state_tuple;
    Py_buffer packet;
    double arrival;
    if (!PyArg_ParseTuple(args, "O!y*d:update_state", &PyTuple_Type, &state_tuple, &packet,
                          &arrival))
        return NULL;
    rtp_state state;
    if (state_from_tuple(state_tuple, &state) < 0) {
        PyBuffer_Release(&packet);
        return NULL;
    }
    if (packet.len < 12) {
        PyBuffer_Release(&packet);
        PyErr_SetString(PyExc_ValueError, "an RTP packet has at least 12 octets");
        return NULL;
    }
    account(&state, packet.buf, packet.len, arrival);
    PyBuffer_Release(&packet);
    return state_to_tuple(&state);
}

static PyObject *
monotonic(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(monotonic_now());
}

static PyMethodDef module_methods[] = {
    {"update_state", update_state, METH_VARARGS,
     "update_state(state, packet, arrival) -> state\n\n"
     "The lanes' statistics kernel on one packet: StreamStats.update on a state tuple."},
    {"monotonic", monotonic, METH_NOARGS,
     "The clock the lanes stamp arrivals with (CLOCK_MONOTONIC, as time.monotonic)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "gateway.media._fastpath",
    .m_doc = "The relay's native forwarder (see gateway/media/fastpath.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    if (PyType_Ready(&EngineType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&fastpath_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(module, "Engine", (PyObject *)&EngineType) < 0) {
        Py_DECREF(&EngineType);
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "BATCH", BATCH) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
