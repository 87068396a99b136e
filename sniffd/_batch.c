/* sniffd._batch: decode.decode_batch in C.
 *
 * One call per capture batch (pcapy-ng next_batch: a buffer of frames and
 * a meta buffer of (sec, usec, offset, caplen) native uint32 quadruples).
 * For each frame it returns one (ts, seg, caplen) tuple:
 *
 *   ts   sec + usec * 1e-6, computed as Python computes it (no FMA);
 *   seg  for the common frame (link header of `link` bytes, ethertype
 *        IPv4, IHL 5, TCP, not a fragment, lengths consistent and whole
 *        in the frame): the plain tuple
 *          (src, dst, sport, dport, seq, ack, flags, payload, 0)
 *        that decode_frame returns as a Segment;
 *        for every other frame: the int offset of the frame in `buf`, for
 *        decode_frame to decide.
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

/* The segment tuple of a common frame, or NULL with no error set when the
 * frame is not one (NULL with an error set: out of memory). */
static PyObject *
fast_segment(const unsigned char *buf, Py_ssize_t off, Py_ssize_t caplen, Py_ssize_t link)
{
    if (caplen < link + 40)
        return NULL;
    const unsigned char *f = buf + off;
    const unsigned char *ip = f + link;
    if (be16(ip - 2) != 0x0800 || ip[0] != 0x45 || ip[9] != 6 || (be16(ip + 6) & 0x3FFF))
        return NULL;
    Py_ssize_t hl = (Py_ssize_t)(ip[32] >> 4) << 2;
    Py_ssize_t start = link + 20 + hl; /* offsets within the frame */
    Py_ssize_t end = link + (Py_ssize_t)be16(ip + 2);
    if (hl < 20 || start > end || end > caplen)
        return NULL;

    PyObject *src = addr_bytes(ip + 12);
    PyObject *dst = src ? addr_bytes(ip + 16) : NULL;
    PyObject *sport = dst ? PyLong_FromUnsignedLong(be16(ip + 20)) : NULL;
    PyObject *dport = sport ? PyLong_FromUnsignedLong(be16(ip + 22)) : NULL;
    PyObject *seq = dport ? PyLong_FromUnsignedLong(be32(ip + 24)) : NULL;
    PyObject *ack = seq ? PyLong_FromUnsignedLong(be32(ip + 28)) : NULL;
    PyObject *flags = ack ? PyLong_FromUnsignedLong(ip[33]) : NULL;
    PyObject *payload = flags ? PyBytes_FromStringAndSize((const char *)f + start, end - start) : NULL;
    PyObject *lost = payload ? PyLong_FromLong(0) : NULL;
    PyObject *seg = lost ? PyTuple_New(9) : NULL;
    if (seg == NULL) {
        Py_XDECREF(src);
        Py_XDECREF(dst);
        Py_XDECREF(sport);
        Py_XDECREF(dport);
        Py_XDECREF(seq);
        Py_XDECREF(ack);
        Py_XDECREF(flags);
        Py_XDECREF(payload);
        Py_XDECREF(lost);
        return NULL;
    }
    PyTuple_SET_ITEM(seg, 0, src);
    PyTuple_SET_ITEM(seg, 1, dst);
    PyTuple_SET_ITEM(seg, 2, sport);
    PyTuple_SET_ITEM(seg, 3, dport);
    PyTuple_SET_ITEM(seg, 4, seq);
    PyTuple_SET_ITEM(seg, 5, ack);
    PyTuple_SET_ITEM(seg, 6, flags);
    PyTuple_SET_ITEM(seg, 7, payload);
    PyTuple_SET_ITEM(seg, 8, lost);
    return seg;
}

static PyObject *
decode_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "decode_batch(buf, meta, link)");
        return NULL;
    }
    Py_buffer buf, meta;
    Py_ssize_t link = PyLong_AsSsize_t(args[2]);
    if (link == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &meta, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    Py_ssize_t n = meta.len / 16;
    PyObject *out = PyList_New(n);
    if (out == NULL)
        goto done;
    const unsigned char *b = (const unsigned char *)buf.buf;
    const uint32_t *m = (const uint32_t *)meta.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t q[4];
        memcpy(q, m + 4 * i, sizeof q); /* meta need not be aligned */
        /* Python's sec + usec * 1e-6, operation for operation. */
        volatile double frac = (double)q[1] * 1e-6;
        double ts = (double)q[0] + frac;
        Py_ssize_t off = q[2], caplen = q[3];
        PyObject *seg = NULL;
        if (link > 0 && off + caplen <= buf.len) {
            seg = fast_segment(b, off, caplen, link);
            if (seg == NULL && PyErr_Occurred())
                goto fail;
        }
        if (seg == NULL) {
            seg = PyLong_FromSsize_t(off);
            if (seg == NULL)
                goto fail;
        }
        PyObject *pts = PyFloat_FromDouble(ts);
        PyObject *pcap = pts ? PyLong_FromSsize_t(caplen) : NULL;
        PyObject *item = pcap ? PyTuple_New(3) : NULL;
        if (item == NULL) {
            Py_DECREF(seg);
            Py_XDECREF(pts);
            Py_XDECREF(pcap);
            goto fail;
        }
        PyTuple_SET_ITEM(item, 0, pts);
        PyTuple_SET_ITEM(item, 1, seg);
        PyTuple_SET_ITEM(item, 2, pcap);
        PyList_SET_ITEM(out, i, item);
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    PyBuffer_Release(&meta);
    PyBuffer_Release(&buf);
    return out;
}

static PyMethodDef methods[] = {
    {"decode_batch", (PyCFunction)(void (*)(void))decode_batch, METH_FASTCALL,
     "decode_batch(buf, meta, link) -> [(ts, seg or frame offset, caplen), ...]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sniffd._batch", "decode.decode_batch in C (see _batch.c)", -1, methods,
};

PyMODINIT_FUNC
PyInit__batch(void)
{
    return PyModule_Create(&module);
}
