/* sniffd._batch: decode.decode_batch in C (and the capture file walks,
 * pcap_records and pcapng_epbs, below).
 *
 * One call per capture batch (pcapy-ng next_batch: a buffer of frames and
 * a meta buffer of (sec, usec, offset, caplen) native uint32 quadruples).
 * It runs the pipeline's clock over the batch (packet time, (epoch + sec)
 * + usec * 1e-6 as Python computes it, never backwards; housekeeping due
 * every `every` seconds of it) and returns
 *
 *   (items, now, next_expire, frame_no, backwards)
 *
 * with one (now, seg, caplen, frame_no) item per frame to process, where
 * now is the clock at that frame and frame_no counts every frame seen, and
 *
 *   seg  for the common frame (link header of `link` bytes, ethertype
 *        IPv4, IHL 5, TCP, not a fragment, lengths consistent and whole
 *        in the frame): the plain tuple
 *          (src, dst, sport, dport, seq, ack, flags, payload, 0, ttl, csum, None)
 *        that decode_frame returns as a Segment (csum: the TCP checksum
 *        checked, 1 valid or 0 not, when the optional tenth argument
 *        `verify` is true, else -1; ctx None: no tag, no tunnel);
 *        for every other frame: the int offset of the frame in `buf`, for
 *        decode_frame to decide;
 *        None: no frame, housekeeping is due here (before the next item).
 *
 * With a shard (k of n, sniffd read --workers), a common frame whose
 * flow_hash % n is not k (another worker's connection) gets no item: it
 * only moves the clock, so every worker keeps one process's clock.
 *
 * The same checks, in the same order, as decode.decode_batch_py (the
 * reference; tests/unit/test_batch_decode.py compares the two on every test
 * capture and on random and mutated batches).  This exists because the
 * per-packet Python around struct.unpack was a quarter of `sniffd read`.
 *
 * Addresses are handed out from a small cache of bytes objects, so the
 * same address is the same object from packet to packet and its hash
 * (needed for the flow-table lookup) is computed once, not per packet.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define ADDR_CACHE 1024

static PyObject *addr_cache[ADDR_CACHE];

static PyObject *
addr_bytes(const unsigned char *p)
{
    uint32_t v = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    unsigned slot = (unsigned)((v * 2654435761u) >> 22) & (ADDR_CACHE - 1);
    PyObject *hit = addr_cache[slot];
    if (hit != NULL && memcmp(PyBytes_AS_STRING(hit), p, 4) == 0) {
        Py_INCREF(hit);
        return hit;
    }
    PyObject *b = PyBytes_FromStringAndSize((const char *)p, 4);
    if (b == NULL)
        return NULL;
    Py_XDECREF(hit);
    Py_INCREF(b);
    addr_cache[slot] = b;
    return b;
}

/* The ints -1 to 255, made once: a segment's flags, lost (0), TTL and
 * checksum verdict are all among them, and taking one from here is a load
 * and an increment where PyLong_FromLong is a call (four per packet). */
static PyObject *small_ints[257];

static inline PyObject *
small_int(int v)
{
    PyObject *o = small_ints[v + 1];
    Py_INCREF(o);
    return o;
}

static inline unsigned
be16(const unsigned char *p)
{
    return ((unsigned)p[0] << 8) | p[1];
}

static inline unsigned long
be32(const unsigned char *p)
{
    return ((unsigned long)p[0] << 24) | ((unsigned long)p[1] << 16) | ((unsigned long)p[2] << 8) | p[3];
}

/* Is the frame at f (caplen bytes) a common frame? */
static int
is_common(const unsigned char *f, Py_ssize_t caplen, Py_ssize_t link)
{
    if (caplen < link + 40)
        return 0;
    const unsigned char *ip = f + link;
    if (be16(ip - 2) != 0x0800 || ip[0] != 0x45 || ip[9] != 6 || (be16(ip + 6) & 0x3FFF))
        return 0;
    Py_ssize_t hl = (Py_ssize_t)(ip[32] >> 4) << 2;
    Py_ssize_t start = link + 20 + hl; /* offsets within the frame */
    Py_ssize_t end = link + (Py_ssize_t)be16(ip + 2);
    return hl >= 20 && start <= end && end <= caplen;
}

/* 1 if the TCP segment after the IPv4 header at ip (no options; seglen
 * bytes, all captured) sums right with its pseudo-header (RFC 9293
 * section 3.1: source and destination address, protocol, TCP length), else
 * 0.  The ones' complement sum is kept in 64 bits and folded at the end;
 * both zeros (0 and 0xFFFF) count as right, as decode._tcp_csum's sum
 * modulo 0xFFFF does (0 cannot occur: the protocol word is 6). */
static int
tcp_checksum_ok(const unsigned char *ip, Py_ssize_t seglen)
{
    /* RFC 1071: the ones'-complement sum does not depend on byte order, so
     * the words are added as the machine reads them (32 bits at a time into
     * a 64-bit sum: a quarter of the additions of 16-bit big-endian reads),
     * the pseudo-header's protocol and length in that same order, and the
     * folded result compared with 0xFFFF (or 0), which read either way is
     * the same.  tests/unit/test_batch_decode.py holds this to the Python
     * reference on every capture and on random input. */
    uint64_t sum = 0;
    uint32_t w;
    const unsigned char *p = ip + 12;
    memcpy(&w, p, 4);
    sum += w;
    memcpy(&w, p + 4, 4);
    sum += w;
    unsigned char tail[4] = {0, 6, (unsigned char)(seglen >> 8), (unsigned char)seglen};
    memcpy(&w, tail, 4);
    sum += w;
    p = ip + 20;
    Py_ssize_t n = seglen;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    while (n >= 16) {
        uint32_t w0, w1, w2, w3;
        memcpy(&w0, p, 4);
        memcpy(&w1, p + 4, 4);
        memcpy(&w2, p + 8, 4);
        memcpy(&w3, p + 12, 4);
        a += w0;
        b += w1;
        c += w2;
        d += w3;
        p += 16;
        n -= 16;
    }
    sum += a + b + c + d;
    while (n >= 4) {
        memcpy(&w, p, 4);
        sum += w;
        p += 4;
        n -= 4;
    }
    unsigned char last[4] = {0, 0, 0, 0};
    memcpy(last, p, (size_t)n);
    memcpy(&w, last, 4);
    sum += w;
    while (sum >> 16)
        sum = (sum & 0xFFFF) + (sum >> 16);
    return sum == 0xFFFF || sum == 0;
}

/* The segment tuple of the common frame at f (is_common said so); NULL
 * with an error set when out of memory. */
static PyObject *
fast_segment(const unsigned char *f, Py_ssize_t link, int verify)
{
    const unsigned char *ip = f + link;
    Py_ssize_t hl = (Py_ssize_t)(ip[32] >> 4) << 2;
    Py_ssize_t start = link + 20 + hl;
    Py_ssize_t end = link + (Py_ssize_t)be16(ip + 2);
    int csum = verify ? tcp_checksum_ok(ip, end - link - 20) : -1;

    PyObject *src = addr_bytes(ip + 12);
    PyObject *dst = src ? addr_bytes(ip + 16) : NULL;
    PyObject *sport = dst ? PyLong_FromUnsignedLong(be16(ip + 20)) : NULL;
    PyObject *dport = sport ? PyLong_FromUnsignedLong(be16(ip + 22)) : NULL;
    PyObject *seq = dport ? PyLong_FromUnsignedLong(be32(ip + 24)) : NULL;
    PyObject *ack = seq ? PyLong_FromUnsignedLong(be32(ip + 28)) : NULL;
    PyObject *payload = ack ? PyBytes_FromStringAndSize((const char *)f + start, end - start) : NULL;
    PyObject *seg = payload ? PyTuple_New(12) : NULL;
    if (seg == NULL) {
        Py_XDECREF(src);
        Py_XDECREF(dst);
        Py_XDECREF(sport);
        Py_XDECREF(dport);
        Py_XDECREF(seq);
        Py_XDECREF(ack);
        Py_XDECREF(payload);
        return NULL;
    }
    PyTuple_SET_ITEM(seg, 0, src);
    PyTuple_SET_ITEM(seg, 1, dst);
    PyTuple_SET_ITEM(seg, 2, sport);
    PyTuple_SET_ITEM(seg, 3, dport);
    PyTuple_SET_ITEM(seg, 4, seq);
    PyTuple_SET_ITEM(seg, 5, ack);
    PyTuple_SET_ITEM(seg, 6, small_int(ip[33]));
    PyTuple_SET_ITEM(seg, 7, payload);
    PyTuple_SET_ITEM(seg, 8, small_int(0));
    PyTuple_SET_ITEM(seg, 9, small_int(ip[8]));
    PyTuple_SET_ITEM(seg, 10, small_int(csum));
    Py_INCREF(Py_None);
    PyTuple_SET_ITEM(seg, 11, Py_None);
    return seg;
}

/* decode.flow_hash of a common frame: symmetric, the same in every process. */
static unsigned long
flow_hash(const unsigned char *ip)
{
    uint32_t x = (uint32_t)be32(ip + 12) ^ (uint32_t)be32(ip + 16) ^ be16(ip + 20) ^ be16(ip + 22);
    return (unsigned long)((uint32_t)(x * 2654435761u) >> 16);
}

/* Append (now, seg, caplen, frame_no) to out; steals seg.  -1 on error. */
static int
append_item(PyObject *out, double now, PyObject *seg, Py_ssize_t caplen, long long frame_no)
{
    PyObject *pnow = PyFloat_FromDouble(now);
    PyObject *pcap = pnow ? PyLong_FromSsize_t(caplen) : NULL;
    PyObject *pno = pcap ? PyLong_FromLongLong(frame_no) : NULL;
    PyObject *item = pno ? PyTuple_New(4) : NULL;
    if (item == NULL) {
        Py_DECREF(seg);
        Py_XDECREF(pnow);
        Py_XDECREF(pcap);
        Py_XDECREF(pno);
        return -1;
    }
    PyTuple_SET_ITEM(item, 0, pnow);
    PyTuple_SET_ITEM(item, 1, seg);
    PyTuple_SET_ITEM(item, 2, pcap);
    PyTuple_SET_ITEM(item, 3, pno);
    int rc = PyList_Append(out, item);
    Py_DECREF(item);
    return rc;
}

static PyObject *
decode_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 9 || nargs > 11) {
        PyErr_SetString(PyExc_TypeError, "decode_batch(buf, meta, link, k, n, now, next_expire, frame_no, every[, verify[, epoch]])");
        return NULL;
    }
    int verify = nargs >= 10 ? PyObject_IsTrue(args[9]) : 0;
    if (verify < 0)
        return NULL;
    /* Seconds added to every meta sec (capture.Batch.epoch): a uint32 of
     * seconds ends in 2106. */
    long long epoch = nargs == 11 ? PyLong_AsLongLong(args[10]) : 0;
    Py_ssize_t link = PyLong_AsSsize_t(args[2]);
    long k = PyLong_AsLong(args[3]);
    long nshards = PyLong_AsLong(args[4]);
    double now = PyFloat_AsDouble(args[5]);
    double next_expire = PyFloat_AsDouble(args[6]);
    long long frame_no = PyLong_AsLongLong(args[7]);
    double every = PyFloat_AsDouble(args[8]);
    if (PyErr_Occurred())
        return NULL;
    if (nshards < 1 || k < 0 || k >= nshards) {
        PyErr_SetString(PyExc_ValueError, "shard k of n: need 0 <= k < n");
        return NULL;
    }
    if (link != 0 && (link < 2 || link > 65535)) {
        /* The ethertype is read at link - 2: a link header is at least that. */
        PyErr_SetString(PyExc_ValueError, "link: 0, or a link header length of 2 to 65535 bytes");
        return NULL;
    }
    Py_buffer buf, meta;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &meta, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    PyObject *result = NULL;
    long long backwards = 0;
    Py_ssize_t n = meta.len / 16;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        goto done;
    const unsigned char *b = (const unsigned char *)buf.buf;
    const uint32_t *m = (const uint32_t *)meta.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t q[4];
        memcpy(q, m + 4 * i, sizeof q); /* meta need not be aligned */
        /* Python's (epoch + sec) + usec * 1e-6, operation for operation
         * (the sum is exact: an integer below 2**53). */
        volatile double frac = (double)q[1] * 1e-6;
        double ts = (double)(epoch + (long long)q[0]) + frac;
        Py_ssize_t off = q[2], caplen = q[3];
        frame_no++;
        /* The clock: packet time, never backwards (Pipeline.feed). */
        if (ts >= now)
            now = ts;
        else
            backwards++;
        if (now >= next_expire) {
            /* Housekeeping is due before this frame (not before the first). */
            if (next_expire != 0.0) {
                Py_INCREF(Py_None);
                if (append_item(out, now, Py_None, 0, frame_no) < 0)
                    goto fail;
            }
            volatile double next = now + every;
            next_expire = next;
        }
        PyObject *seg;
        if (link > 0 && off + caplen <= buf.len && is_common(b + off, caplen, link)) {
            if (nshards > 1 && flow_hash(b + off + link) % (unsigned long)nshards != (unsigned long)k)
                continue; /* another shard's connection: only its time counted */
            seg = fast_segment(b + off, link, verify);
        } else {
            seg = PyLong_FromSsize_t(off);
        }
        if (seg == NULL)
            goto fail;
        if (append_item(out, now, seg, caplen, frame_no) < 0)
            goto fail;
    }
    result = Py_BuildValue("(NddLL)", out, now, next_expire, frame_no, backwards);
    goto done;
fail:
    Py_CLEAR(out);
done:
    PyBuffer_Release(&meta);
    PyBuffer_Release(&buf);
    return result;
}

/* pcap_records(buf, pos, n, swapped, nano, max_caplen) -> (meta, pos, stop)
 *
 * Walks up to n records of a classic pcap file held in buf (a chunk of the
 * file; pos: the offset of a record header in it) and returns their meta
 * entries, as pcapy-ng's next_batch lays them out (native uint32 sec, usec,
 * offset in buf, caplen), and the offset after the last one.  stop: 0 when
 * n records were walked, 1 when the next record is not whole in buf (read
 * more, or the file ends there), 2 when the next record's caplen is above
 * max_caplen (libpcap decides what such a record means).  Nanosecond files
 * are given in microseconds, truncated, as libpcap gives them. */
static PyObject *
pcap_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "pcap_records(buf, pos, n, swapped, nano, max_caplen)");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t n = PyLong_AsSsize_t(args[2]);
    int swapped = PyObject_IsTrue(args[3]);
    int nano = PyObject_IsTrue(args[4]);
    Py_ssize_t max_caplen = PyLong_AsSsize_t(args[5]);
    if (PyErr_Occurred())
        return NULL;
    if (pos < 0 || n < 0 || n > PY_SSIZE_T_MAX / 16) {
        PyErr_SetString(PyExc_ValueError, "pos and n must not be negative (nor n absurd)");
        return NULL;
    }
    Py_buffer buf;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *meta = PyBytes_FromStringAndSize(NULL, 16 * n);
    if (meta == NULL) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    uint32_t *out = (uint32_t *)PyBytes_AS_STRING(meta);
    const unsigned char *b = (const unsigned char *)buf.buf;
    Py_ssize_t got = 0;
    int stop = 0;
    while (got < n) {
        if (pos + 16 > buf.len) {
            stop = 1;
            break;
        }
        uint32_t h[4];
        memcpy(h, b + pos, sizeof h);
        if (swapped) {
            for (int i = 0; i < 4; i++)
                h[i] = __builtin_bswap32(h[i]);
        }
        Py_ssize_t caplen = h[2];
        if (caplen > max_caplen) {
            stop = 2;
            break;
        }
        if (pos + 16 + caplen > buf.len) {
            stop = 1;
            break;
        }
        uint32_t q[4] = {h[0], nano ? h[1] / 1000 : h[1], (uint32_t)(pos + 16), h[2]};
        if (pos + 16 > (Py_ssize_t)UINT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "buffer too large for 32-bit offsets");
            Py_DECREF(meta);
            PyBuffer_Release(&buf);
            return NULL;
        }
        memcpy(out + 4 * got, q, sizeof q);
        pos += 16 + caplen;
        got++;
    }
    PyBuffer_Release(&buf);
    if (got < n && _PyBytes_Resize(&meta, 16 * got) < 0)
        return NULL;
    return Py_BuildValue("(Nni)", meta, pos, stop);
}

/* pcapng_epbs(buf, pos, n, swapped, interfaces, snapshot, epoch)
 *     -> (meta, pos, stop, epoch)
 *
 * The common case of sniffd.pcapng's walk: up to n Enhanced Packet Blocks
 * in a row from pos in buf (a chunk of a pcapng file), each whole and
 * sound, as meta entries (uint32 seconds - epoch, microseconds, offset of
 * the packet data in buf, caplen).  interfaces: per interface of the
 * section, native (uint64 time stamp units per second, int64 if_tsoffset
 * seconds); snapshot: the largest caplen; epoch: the batch's (the multiple
 * of 2**32 below its seconds), -1 before its first packet.  stop 0: n
 * packets, or the next one's epoch differs (it starts the next batch);
 * stop 1: the next block is for the Python walk to read (any other block
 * type, a block not whole in buf, anything odd about it), which also says
 * what is wrong.  sniffd.pcapng.pcapng_epbs_py is the reference. */
#define PCAPNG_EPB 6u
#define PCAPNG_MAX_BLOCK (16u * 1024 * 1024)
#define TS_END 253402300800LL /* 10000-01-01T00:00:00Z */

static inline uint32_t
rd32(const unsigned char *p, int swapped)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return swapped ? __builtin_bswap32(v) : v;
}

static PyObject *
pcapng_epbs(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "pcapng_epbs(buf, pos, n, swapped, interfaces, snapshot, epoch)");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t n = PyLong_AsSsize_t(args[2]);
    int swapped = PyObject_IsTrue(args[3]);
    Py_ssize_t snapshot = PyLong_AsSsize_t(args[5]);
    long long epoch = PyLong_AsLongLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    if (pos < 0 || n < 0 || n > PY_SSIZE_T_MAX / 16) {
        PyErr_SetString(PyExc_ValueError, "pos and n must not be negative (nor n absurd)");
        return NULL;
    }
    Py_buffer buf, ifs;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[4], &ifs, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    PyObject *meta = PyBytes_FromStringAndSize(NULL, 16 * n);
    if (meta == NULL) {
        PyBuffer_Release(&ifs);
        PyBuffer_Release(&buf);
        return NULL;
    }
    uint32_t *out = (uint32_t *)PyBytes_AS_STRING(meta);
    const unsigned char *b = (const unsigned char *)buf.buf;
    Py_ssize_t nifs = ifs.len / 16;
    Py_ssize_t got = 0;
    int stop = 0;
    while (got < n) {
        if (pos + 28 > buf.len || rd32(b + pos, swapped) != PCAPNG_EPB) {
            stop = 1;
            break;
        }
        uint32_t blen = rd32(b + pos + 4, swapped);
        if (blen < 32 || (blen & 3) || blen > PCAPNG_MAX_BLOCK || pos + (Py_ssize_t)blen > buf.len
            || rd32(b + pos + blen - 4, swapped) != blen) {
            stop = 1;
            break;
        }
        uint32_t iface = rd32(b + pos + 8, swapped);
        uint64_t t = ((uint64_t)rd32(b + pos + 12, swapped) << 32) | rd32(b + pos + 16, swapped);
        uint32_t caplen = rd32(b + pos + 20, swapped);
        if ((Py_ssize_t)iface >= nifs || (Py_ssize_t)caplen > snapshot || 28 + (Py_ssize_t)caplen > (Py_ssize_t)blen - 4) {
            stop = 1;
            break;
        }
        uint64_t units;
        int64_t offset;
        memcpy(&units, (const char *)ifs.buf + 16 * iface, 8);
        memcpy(&offset, (const char *)ifs.buf + 16 * iface + 8, 8);
        if (units == 0) {
            stop = 1;
            break;
        }
        __int128 sec = (__int128)(t / units) + offset;
        if (sec < 0 || sec >= TS_END) {
            stop = 1;
            break;
        }
        uint32_t usec = (uint32_t)((unsigned __int128)(t % units) * 1000000u / units);
        long long low = (long long)(sec & 0xFFFFFFFF);
        long long e = (long long)sec - low;
        if (e != epoch) {
            if (epoch != -1)
                break; /* stop 0: the next batch starts here */
            epoch = e;
        }
        if (pos + 28 > (Py_ssize_t)UINT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "buffer too large for 32-bit offsets");
            Py_DECREF(meta);
            PyBuffer_Release(&ifs);
            PyBuffer_Release(&buf);
            return NULL;
        }
        uint32_t q[4] = {(uint32_t)low, usec, (uint32_t)(pos + 28), caplen};
        memcpy(out + 4 * got, q, sizeof q);
        pos += blen;
        got++;
    }
    PyBuffer_Release(&ifs);
    PyBuffer_Release(&buf);
    if (got < n && _PyBytes_Resize(&meta, 16 * got) < 0)
        return NULL;
    return Py_BuildValue("(NniL)", meta, pos, stop, epoch);
}

static PyMethodDef methods[] = {
    {"pcap_records", (PyCFunction)(void (*)(void))pcap_records, METH_FASTCALL,
     "pcap_records(buf, pos, n, swapped, nano, max_caplen) -> (meta, pos, stop)"},
    {"pcapng_epbs", (PyCFunction)(void (*)(void))pcapng_epbs, METH_FASTCALL,
     "pcapng_epbs(buf, pos, n, swapped, interfaces, snapshot, epoch) -> (meta, pos, stop, epoch)"},
    {"decode_batch", (PyCFunction)(void (*)(void))decode_batch, METH_FASTCALL,
     "decode_batch(buf, meta, link, k, n, now, next_expire, frame_no, every[, verify[, epoch]]) -> (items, now, next_expire, frame_no, backwards)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sniffd._batch", "decode.decode_batch in C (see _batch.c)", -1, methods,
};

PyMODINIT_FUNC
PyInit__batch(void)
{
    for (int i = 0; i < 257; i++) {
        if (small_ints[i] == NULL && (small_ints[i] = PyLong_FromLong(i - 1)) == NULL)
            return NULL;
    }
    return PyModule_Create(&module);
}
