/* sniffd.tls._session: TlsSession's per-byte machinery in C.
 *
 *   Session(): feed(from_client, data, now), gap(from_client, nbytes), close(now);
 *   the attributes and properties of sniffd.tls.session.TlsSessionPy.
 *
 * The Python reference is sniffd/tls/session.py (TlsSessionPy, with the
 * record reader of records.py and the handshake reader of handshake.py, the
 * hello parsers of hello.py); this file does the same, byte for byte, and
 * tests/unit/test_tls_session_c.py holds the two equal after every call on
 * every TLS stream of the test captures, cut, mutated and interleaved.
 * result() (the record's tls object, session._Result's in C) and Flow
 * (flow.TlsFlow's per-segment work, flow.TlsFlowPy's in C) are held equal to
 * their references the same way.  Rare or heavy paths call back into the
 * Python functions: the fingerprints on a memo miss, SSL
 * 2.0 hellos (detect.looks_like_sslv2_client_hello,
 * hello.parse_sslv2_client_hello), the certificate (x509.first_certificate,
 * x509.certificate_summary) and alerts.alert().
 *
 * It exists because the Python machinery cost ~27k instructions per packet
 * of a short TLS connection (13 packets), three times the flow table's.
 *
 * Two things of the reference are kept on purpose, because they are what
 * it does: a record body's piece is cut into handshake messages whole
 * before the session looks at them (so the "first message is a
 * ClientHello" check sees the count of message headers at the end of the
 * piece, and which messages' bodies are kept is decided by what the
 * session kept when the piece began); records, in contrast, are looked at
 * one at a time as they are framed.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "structmember.h"
#include <string.h>

/* Kept equal to session.py's (tests/unit/test_tls_session_c.py checks). */
#define MAX_HELLO_BYTES (64 * 1024)
#define MAX_CERTIFICATE_BYTES (256 * 1024)
#define MAX_ALERTS 16
/* records.py */
#define MAX_RECORD_BYTES (16384 + 2048)
#define CHANGE_CIPHER_SPEC 20
#define ALERT 21
#define HANDSHAKE 22
#define APPLICATION_DATA 23
#define HEARTBEAT 24
/* handshake.py */
#define CLIENT_HELLO 1
#define SERVER_HELLO 2
#define CERTIFICATE 11
#define SERVER_HELLO_DONE 14
/* hello.py */
#define TLS13 0x0304
#define FATAL 2

/* Mode and Event of session.py */
enum { M_START, M_RECORDS, M_ENCRYPTED, M_STOPPED };
enum { E_TLS, E_SSLV2_COMPATIBLE, E_SSLV2, E_NOT_TLS, E_SWITCH, E_GAP, E_BAD_FRAMING, E_CLOSE };
static const char *MODE_NAMES[] = {"start", "records", "encrypted", "stopped"};

/* Python objects looked up once */
static PyObject *ClientHelloT, *ServerHelloT, *looks_sslv2, *parse_sslv2, *first_cert, *cert_summary, *alert_fn;
static PyObject *A_NOT_TLS, *A_SERVER_NOT_TLS, *A_SSLV2_HELLO, *A_BAD_RECORD, *A_RECORD_OVERSIZED,
    *A_HANDSHAKE_TOO_LARGE, *A_BAD_HELLO, *A_BAD_CERTIFICATE, *A_GAP, *A_TRUNCATED_HANDSHAKE, *A_TOO_MANY_ALERTS;
static PyObject *S_highest_version, *S_legacy_version;

/* --- the hello dataclasses, made without their generated __init__ -------------------------
 *
 * ClientHello(...) / ServerHello(...) ran the dataclass's generated __init__
 * (a Python frame, ~12 stores, and a default_factory call per list not given):
 * ~95 bytecodes a connection.  The C parser has every field's value already,
 * so the object is allocated by its type and its slots are filled directly.
 * The same type and the same values (tests/unit/test_tls_session_c.py compares
 * repr and ==): the offsets are read once, at import, from the classes' own
 * member descriptors, in the order of their __dataclass_fields__, which must
 * be these names (else the import fails, loudly, in the tests), and a class
 * with a __post_init__ is refused (its __init__ would do more than store). */
static const char *CH_FIELDS[] = {"legacy_version", "session_id", "cipher_suites", "extensions", "sni", "alpn",
                                  "supported_versions", "supported_groups", "ec_point_formats",
                                  "signature_algorithms", "sslv2", "malformed"};
static const char *SH_FIELDS[] = {"legacy_version", "session_id", "cipher_suite", "extensions", "selected_version",
                                  "alpn", "pre_shared_key", "hello_retry", "malformed"};
#define N_CH_FIELDS 12
#define N_SH_FIELDS 9
static Py_ssize_t ch_off[N_CH_FIELDS], sh_off[N_SH_FIELDS];
enum { CH_LEGACY, CH_SESSION_ID, CH_SUITES, CH_EXTENSIONS, CH_SNI, CH_ALPN, CH_SSLV2 = 10 };
enum { SH_LEGACY, SH_SESSION_ID, SH_CIPHER, SH_EXTENSIONS, SH_SELECTED, SH_ALPN, SH_PSK, SH_HRR };
/* a hello's field (a borrowed reference; every field is set by both ways of making one) */
#define FIELD(o, off) (*(PyObject **)((char *)(o) + (off)))

static int
slot_offsets(PyObject *type, const char **names, int n, Py_ssize_t *off)
{
    if (!PyType_Check(type) || PyObject_HasAttrString(type, "__post_init__")) {
        PyErr_Format(PyExc_TypeError, "sniffd.tls._session: %R is not a plain dataclass", type);
        return -1;
    }
    /* a dataclass: its fields in order; any other class: its __slots__, in order
     * (its __init__ stores each argument in the slot of its name: TlsRecord, _Done) */
    int dc = PyObject_HasAttrString(type, "__dataclass_fields__");
    PyObject *fields = PyObject_GetAttrString(type, dc ? "__dataclass_fields__" : "__slots__");
    if (fields == NULL)
        return -1;
    int ok;
    Py_ssize_t i = 0;
    if (dc) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        ok = PyDict_Check(fields) && PyDict_GET_SIZE(fields) == n;
        while (ok && PyDict_Next(fields, &pos, &k, &v))
            ok = PyUnicode_Check(k) && PyUnicode_CompareWithASCIIString(k, names[i++]) == 0;
    }
    else {
        ok = PyTuple_Check(fields) && PyTuple_GET_SIZE(fields) == n;
        for (i = 0; ok && i < n; i++)
            ok = PyUnicode_Check(PyTuple_GET_ITEM(fields, i)) &&
                 PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(fields, i), names[i]) == 0;
    }
    Py_DECREF(fields);
    for (i = 0; ok && i < n; i++) {
        PyObject *d = PyObject_GetAttrString(type, names[i]);
        if (d == NULL)
            return -1;
        ok = Py_IS_TYPE(d, &PyMemberDescr_Type) && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (ok)
            off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
    }
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "sniffd.tls._session: the fields of %R changed", type);
        return -1;
    }
    return 0;
}

/* type(*fields), as the generated __init__ would make it (the fields are borrowed) */
static PyObject *
new_hello(PyObject *type, const Py_ssize_t *off, PyObject **fields, int n)
{
    PyTypeObject *t = (PyTypeObject *)type;
    PyObject *o = t->tp_alloc(t, 0);
    if (o == NULL)
        return NULL;
    for (int i = 0; i < n; i++)
        FIELD(o, off[i]) = Py_NewRef(fields[i]);
    return o;
}

typedef struct {
    int mode;
    int parsing;
    int is_client;
    /* record reader (records.RecordReader) */
    unsigned char rhdr[5];
    int rhdr_len;
    int rtype;
    Py_ssize_t rremaining;
    Py_ssize_t records;
    int rdead;
    /* handshake reader (handshake.HandshakeReader) */
    int keep_none; /* keep swapped to _NOTHING */
    unsigned char hhdr[4];
    int hhdr_len;
    int htype;
    Py_ssize_t hlength, hremaining, hbound, messages;
    int has_body;
    unsigned char *hbody;
    Py_ssize_t hbody_len, hbody_cap;
    /* session._Half */
    unsigned char *start_buf;
    Py_ssize_t start_len;
    unsigned char alert_buf;
    int alert_len;
    long long bytes;
    int sent_ccs, saw_hello_done;
} Half;

/* The object fields hold Py_None, never NULL, while the session lives: they
 * are T_OBJECT_EX members, which CPython 3.11 reads as fast as a __slots__
 * attribute (a getter costs ~300 instructions a read, and result() and the
 * flow table read ~25 per connection).  NONE() also takes the NULL a
 * cleared session has. */
#define NONE(x) ((x) == NULL || (x) == Py_None)

typedef struct {
    PyObject_HEAD
    Half c, s;
    PyObject *client_hello, *first_server_hello, *server_hello, *server_cert;
    PyObject *alerts, *anomalies;
    PyObject *first_ts, *last_ts, *established_ts;
    PyObject *client_fp, *server_fp;
    PyObject *client_key, *server_key; /* fingerprint._client_key(client_hello), _server_key(first_server_hello) */
    long long missed_bytes;
    char closed, fatal_alert, sslv2_only;
    /* mem, done and established as the members the flow table and result()
     * read (see NONE), brought up to date at the end of every call (sync_members) */
    PyObject *mem_obj, *done_obj, *established_obj;
    Py_ssize_t mem_now;
    int ch_highest;  /* client_hello.highest_version() */
    int sh_version;  /* server_hello.version */
    int fsh_version; /* first_server_hello.version */
} Session;

/* --- one direction ------------------------------------------------------------- */

static Py_ssize_t
keep_bound(int is_client, int keep_none, int mtype)
{
    if (keep_none)
        return -1;
    if (is_client)
        return mtype == CLIENT_HELLO ? MAX_HELLO_BYTES : -1;
    if (mtype == SERVER_HELLO)
        return MAX_HELLO_BYTES;
    if (mtype == CERTIFICATE)
        return MAX_CERTIFICATE_BYTES;
    return -1;
}

static void
half_init(Half *h, int is_client)
{
    memset(h, 0, sizeof(*h));
    h->mode = M_START;
    h->parsing = 1;
    h->is_client = is_client;
    h->htype = -1;
}

static void
half_release(Half *h)
{
    PyMem_Free(h->hbody);
    h->hbody = NULL;
    h->hbody_len = h->hbody_cap = 0;
    h->has_body = 0;
    h->hhdr_len = 0;
    h->hremaining = 0;
    h->rdead = 1;
    h->rhdr_len = 0;
    h->rremaining = 0;
    PyMem_Free(h->start_buf);
    h->start_buf = NULL;
    h->start_len = 0;
    h->alert_len = 0;
}

static Py_ssize_t
half_mem(const Half *h)
{
    return h->rhdr_len + h->hhdr_len + (h->has_body ? h->hbody_len : 0) + h->start_len + h->alert_len;
}

/* session._TRANSITIONS */
static void
half_to(Half *h, int ev)
{
    if (!h->parsing)
        return;
    int m = h->mode;
    if (m == M_START) {
        if (ev == E_TLS || ev == E_SSLV2_COMPATIBLE)
            m = M_RECORDS;
        else if (ev == E_SSLV2 || ev == E_NOT_TLS || ev == E_GAP || ev == E_CLOSE)
            m = M_STOPPED;
    }
    else if (m == M_RECORDS) {
        if (ev == E_SWITCH)
            m = M_ENCRYPTED;
        else if (ev == E_NOT_TLS || ev == E_SSLV2 || ev == E_GAP || ev == E_BAD_FRAMING || ev == E_CLOSE)
            m = M_STOPPED;
    }
    h->mode = m;
    if (m != M_START && m != M_RECORDS) {
        h->parsing = 0;
        half_release(h); /* nothing will be parsed again */
    }
}

static int
body_append(Half *h, const unsigned char *p, Py_ssize_t n)
{
    if (n <= 0)
        return 0;
    if (h->hbody_len + n > h->hbody_cap) {
        Py_ssize_t cap = h->hbody_cap ? h->hbody_cap : 512;
        while (cap < h->hbody_len + n)
            cap *= 2;
        if (cap > h->hbound)
            cap = h->hbound;
        unsigned char *b = PyMem_Realloc(h->hbody, cap);
        if (b == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        h->hbody = b;
        h->hbody_cap = cap;
    }
    memcpy(h->hbody + h->hbody_len, p, n);
    h->hbody_len += n;
    return 0;
}

/* --- handshake messages of one piece of record body (HandshakeReader.feed) ------- */

enum { EV_START, EV_END };

typedef struct {
    int kind, mtype;
    Py_ssize_t length;
    const unsigned char *body; /* NULL: not kept */
    Py_ssize_t blen;
    unsigned char *owned; /* body when it was gathered across pieces */
} HsEvent;

typedef struct {
    HsEvent small[32];
    HsEvent *ev;
    Py_ssize_t n, cap;
} Events;

static int
ev_push(Events *e, int kind, int mtype, Py_ssize_t length, const unsigned char *body, Py_ssize_t blen, unsigned char *owned)
{
    if (e->n == e->cap) {
        Py_ssize_t cap = e->cap * 4;
        HsEvent *ev;
        if (e->ev == e->small) {
            ev = PyMem_Malloc(cap * sizeof(HsEvent));
            if (ev != NULL)
                memcpy(ev, e->small, e->n * sizeof(HsEvent));
        }
        else
            ev = PyMem_Realloc(e->ev, cap * sizeof(HsEvent));
        if (ev == NULL) {
            PyMem_Free(owned);
            PyErr_NoMemory();
            return -1;
        }
        e->ev = ev;
        e->cap = cap;
    }
    HsEvent *x = &e->ev[e->n++];
    x->kind = kind;
    x->mtype = mtype;
    x->length = length;
    x->body = body;
    x->blen = blen;
    x->owned = owned;
    return 0;
}

static void
ev_free(Events *e)
{
    for (Py_ssize_t i = 0; i < e->n; i++)
        PyMem_Free(e->ev[i].owned);
    if (e->ev != e->small)
        PyMem_Free(e->ev);
}

static int
hs_feed(Half *h, const unsigned char *chunk, Py_ssize_t n, Events *e)
{
    Py_ssize_t pos = 0;
    if (h->hremaining) {
        Py_ssize_t take = h->hremaining < n ? h->hremaining : n;
        if (h->has_body && h->hbody_len < h->hbound) {
            Py_ssize_t room = h->hbound - h->hbody_len;
            if (body_append(h, chunk, take < room ? take : room) < 0)
                return -1;
        }
        h->hremaining -= take;
        pos = take;
        if (!h->hremaining) {
            if (h->has_body) {
                unsigned char *owned = h->hbody;
                Py_ssize_t blen = h->hbody_len;
                h->hbody = NULL;
                h->hbody_len = h->hbody_cap = 0;
                h->has_body = 0;
                /* a non-NULL pointer for an empty kept body */
                if (ev_push(e, EV_END, h->htype, h->hlength, owned ? owned : (const unsigned char *)"", blen, owned) < 0)
                    return -1;
            }
            else if (ev_push(e, EV_END, h->htype, h->hlength, NULL, 0, NULL) < 0)
                return -1;
        }
    }
    int keep_none = h->keep_none; /* the reader reads keep once per piece */
    while (pos < n) {
        unsigned long header;
        if (n - pos >= 4 && !h->hhdr_len) {
            const unsigned char *q = chunk + pos;
            header = ((unsigned long)q[0] << 24) | ((unsigned long)q[1] << 16) | ((unsigned long)q[2] << 8) | q[3];
            pos += 4;
        }
        else {
            Py_ssize_t want = 4 - h->hhdr_len;
            Py_ssize_t take = n - pos < want ? n - pos : want;
            memcpy(h->hhdr + h->hhdr_len, chunk + pos, take);
            h->hhdr_len += (int)take;
            pos += take;
            if (h->hhdr_len < 4)
                break;
            h->hhdr_len = 0;
            const unsigned char *q = h->hhdr;
            header = ((unsigned long)q[0] << 24) | ((unsigned long)q[1] << 16) | ((unsigned long)q[2] << 8) | q[3];
        }
        int mtype = (int)(header >> 24);
        Py_ssize_t length = (Py_ssize_t)(header & 0xFFFFFF);
        h->messages++;
        if (ev_push(e, EV_START, mtype, length, NULL, 0, NULL) < 0)
            return -1;
        Py_ssize_t bound = keep_bound(h->is_client, keep_none, mtype);
        if (length <= n - pos) {
            if (bound < 0) {
                if (ev_push(e, EV_END, mtype, length, NULL, 0, NULL) < 0)
                    return -1;
            }
            else if (ev_push(e, EV_END, mtype, length, chunk + pos, length < bound ? length : bound, NULL) < 0)
                return -1;
            pos += length;
            continue;
        }
        h->htype = mtype;
        h->hlength = length;
        PyMem_Free(h->hbody);
        h->hbody = NULL;
        h->hbody_len = h->hbody_cap = 0;
        if (bound < 0)
            h->has_body = 0;
        else {
            h->hbound = bound;
            h->has_body = 1;
            Py_ssize_t take = n - pos < bound ? n - pos : bound;
            if (body_append(h, chunk + pos, take) < 0)
                return -1;
        }
        h->hremaining = length - (n - pos);
        pos = n;
    }
    return 0;
}

/* --- hellos (hello.py) ---------------------------------------------------------------- */

#define U16(b, i) (((unsigned)(b)[i] << 8) | (b)[(i) + 1])

/* The ints of hellos (suites, extension types, groups, signature algorithms:
 * 16-bit codes), made once each and kept for the process, as CPython keeps
 * 0..256: a ClientHello has ~80 of them, mostly above 256, and making each
 * anew was a third of its parse.  Bounded: at most 65536 ints (~2 MB), and
 * real traffic uses a few hundred codes. */
static PyObject *u16_ints[65536];

static PyObject *
u16_long(unsigned v)
{
    PyObject *o = u16_ints[v & 0xFFFF];
    if (o == NULL) {
        if ((o = PyLong_FromLong(v & 0xFFFF)) == NULL)
            return NULL;
        u16_ints[v & 0xFFFF] = o;
    }
    Py_INCREF(o);
    return o;
}

static int
is_grease(unsigned v)
{
    return (v >> 8) == (v & 0xFF) && (v & 0x0F) == 0x0A;
}

/* hello._whole: where the contents of the one vector filling b[start:stop] begin, or -1 */
static Py_ssize_t
whole(const unsigned char *b, Py_ssize_t start, Py_ssize_t stop, int len_bytes)
{
    Py_ssize_t first = start + len_bytes;
    if (first > stop)
        return -1;
    Py_ssize_t len = len_bytes == 1 ? b[start] : (Py_ssize_t)U16(b, start);
    if (first + len != stop)
        return -1;
    return first;
}

/* hello._u16s: a list, or Py_None (a new reference) when malformed, NULL on error */
static PyObject *
u16s(const unsigned char *b, Py_ssize_t start, Py_ssize_t stop, int len_bytes)
{
    Py_ssize_t first = whole(b, start, stop, len_bytes);
    if (first < 0 || ((stop - first) & 1))
        Py_RETURN_NONE;
    Py_ssize_t k = (stop - first) >> 1;
    PyObject *out = PyList_New(k);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *v = u16_long(U16(b, first + 2 * i));
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, v);
    }
    return out;
}

/* hello._protocol_names: a list of bytes, or Py_None when malformed */
static PyObject *
protocol_names(const unsigned char *b, Py_ssize_t start, Py_ssize_t stop)
{
    Py_ssize_t i = whole(b, start, stop, 2);
    if (i < 0)
        Py_RETURN_NONE;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    while (i < stop) {
        Py_ssize_t end = i + 1 + b[i];
        if (end > stop) {
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        PyObject *name = PyBytes_FromStringAndSize((const char *)b + i + 1, end - i - 1);
        if (name == NULL || PyList_Append(out, name) < 0) {
            Py_XDECREF(name);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(name);
        i = end;
    }
    return out;
}

/* hello._server_name: a str, Py_None for no host_name, NULL with *bad set when malformed */
static PyObject *
server_name(const unsigned char *b, Py_ssize_t start, Py_ssize_t stop, int *bad)
{
    Py_ssize_t i = whole(b, start, stop, 2);
    if (i < 0) {
        *bad = 1;
        return NULL;
    }
    Py_ssize_t first_at = -1, first_end = 0;
    while (i < stop) {
        int name_type = b[i];
        i += 3;
        if (i > stop) {
            *bad = 1;
            return NULL;
        }
        Py_ssize_t end = i + U16(b, i - 2);
        if (end > stop) {
            *bad = 1;
            return NULL;
        }
        if (name_type == 0 && first_at < 0) {
            first_at = i;
            first_end = end;
        }
        i = end;
    }
    if (first_at < 0)
        Py_RETURN_NONE;
    /* sniffd.http.syntax.text: UTF-8, else surrogateescape (the same str either way) */
    return PyUnicode_DecodeUTF8((const char *)b + first_at, first_end - first_at, "surrogateescape");
}

/* hello._extensions: the types (a list) and the first span of each wanted type.
 * Returns 1 parsed, 0 malformed, -1 error; *dup set when a type repeats. */
typedef struct {
    Py_ssize_t start[6], stop[6];
} Spans;

static int
extensions(const unsigned char *b, Py_ssize_t pos, Py_ssize_t n, const int *wanted, int nwanted,
           PyObject **types_out, Spans *spans, int *order, int *norder, int *dup)
{
    *norder = 0;
    *dup = 0;
    *types_out = NULL;
    for (int k = 0; k < nwanted; k++)
        spans->start[k] = -1;
    if (pos == n) {
        *types_out = PyList_New(0);
        return *types_out ? 1 : -1;
    }
    if (pos + 2 > n || pos + 2 + (Py_ssize_t)U16(b, pos) != n)
        return 0;
    /* duplicates: the first 64 types compared pairwise, a bitmap of the 2^16 types beyond */
    unsigned first[64];
    int nfirst = 0;
    unsigned char *seen = NULL;
    PyObject *types = PyList_New(0);
    if (types == NULL)
        return -1;
    Py_ssize_t i = pos + 2;
    int rc = 1;
    while (i < n) {
        if (i + 4 > n) {
            rc = 0;
            break;
        }
        unsigned etype = U16(b, i);
        Py_ssize_t length = U16(b, i + 2);
        PyObject *t = u16_long(etype);
        if (t == NULL || PyList_Append(types, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(types);
            PyMem_Free(seen);
            return -1;
        }
        Py_DECREF(t);
        if (!*dup) {
            if (nfirst < 64) {
                for (int q = 0; q < nfirst; q++)
                    if (first[q] == etype)
                        *dup = 1;
                first[nfirst++] = etype;
            }
            else {
                if (seen == NULL) {
                    if ((seen = PyMem_Calloc(8192, 1)) == NULL) {
                        Py_DECREF(types);
                        PyErr_NoMemory();
                        return -1;
                    }
                    for (int q = 0; q < nfirst; q++)
                        seen[first[q] >> 3] |= (unsigned char)(1u << (first[q] & 7));
                }
                if (seen[etype >> 3] & (1u << (etype & 7)))
                    *dup = 1;
                seen[etype >> 3] |= (unsigned char)(1u << (etype & 7));
            }
        }
        i += 4;
        for (int k = 0; k < nwanted; k++) {
            if ((int)etype == wanted[k] && spans->start[k] < 0) {
                spans->start[k] = i;
                spans->stop[k] = i + length;
                order[(*norder)++] = k;
            }
        }
        i += length;
    }
    PyMem_Free(seen);
    if (rc == 1 && i != n)
        rc = 0;
    if (rc == 0) {
        Py_DECREF(types);
        return 0;
    }
    *types_out = types;
    return 1;
}

#define EXT_SERVER_NAME 0
#define EXT_SUPPORTED_GROUPS 10
#define EXT_EC_POINT_FORMATS 11
#define EXT_SIGNATURE_ALGORITHMS 13
#define EXT_ALPN 16
#define EXT_PRE_SHARED_KEY 41
#define EXT_SUPPORTED_VERSIONS 43

/* fingerprint._packed: the values of ``lists`` as big-endian 16-bit numbers,
 * or Py_None when more than MAX_MEMO_VALUES (or one is out of range). */
#define MAX_MEMO_VALUES 512

static PyObject *
packed(PyObject **lists, int k)
{
    Py_ssize_t total = 0;
    for (int i = 0; i < k; i++)
        total += PyList_GET_SIZE(lists[i]);
    if (total > MAX_MEMO_VALUES)
        Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(NULL, 2 * total);
    if (out == NULL)
        return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    for (int i = 0; i < k; i++) {
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(lists[i]); j++) {
            long v = PyLong_AsLong(PyList_GET_ITEM(lists[i], j));
            if (v < 0 || v > 0xFFFF) {
                Py_DECREF(out);
                if (PyErr_Occurred())
                    return NULL;
                Py_RETURN_NONE;
            }
            *p++ = (unsigned char)(v >> 8);
            *p++ = (unsigned char)v;
        }
    }
    return out;
}

/* fingerprint._client_key of the ClientHello made of ``fields`` */
static PyObject *
client_key(PyObject **fields)
{
    PyObject *lists[6] = {fields[2], fields[3], fields[7], fields[8], fields[6], fields[9]};
    PyObject *pk = packed(lists, 6);
    if (pk == NULL || pk == Py_None)
        return pk;
    PyObject *counts = Py_BuildValue("(nnnnn)", PyList_GET_SIZE(fields[2]), PyList_GET_SIZE(fields[3]),
                                     PyList_GET_SIZE(fields[7]), PyList_GET_SIZE(fields[8]), PyList_GET_SIZE(fields[6]));
    PyObject *key = NULL;
    if (counts != NULL)
        key = PyTuple_Pack(4, fields[0], counts, pk, PyList_GET_SIZE(fields[5]) ? PyList_GET_ITEM(fields[5], 0) : Py_None);
    Py_XDECREF(counts);
    Py_DECREF(pk);
    return key;
}

static const int CLIENT_WANTED[6] = {EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS, EXT_SUPPORTED_GROUPS,
                                     EXT_EC_POINT_FORMATS, EXT_SIGNATURE_ALGORITHMS};

/* hello.parse_client_hello: a ClientHello, Py_None, or NULL on error;
 * *malformed and *highest (highest_version()) for a ClientHello. */
static PyObject *
parse_client_hello(const unsigned char *body, Py_ssize_t n, int *malformed, int *highest, PyObject **key)
{
    *key = NULL;
    if (n < 35)
        Py_RETURN_NONE;
    Py_ssize_t pos = 35 + body[34];
    if (pos + 2 > n)
        Py_RETURN_NONE;
    Py_ssize_t suites_end = pos + 2 + U16(body, pos);
    if (suites_end >= n || ((suites_end - pos) & 1))
        Py_RETURN_NONE;
    Py_ssize_t ext_pos = suites_end + 1 + body[suites_end];
    if (ext_pos > n)
        Py_RETURN_NONE;
    PyObject *types;
    Spans spans;
    int order[6], norder, dup;
    int rc = extensions(body, ext_pos, n, CLIENT_WANTED, 6, &types, &spans, order, &norder, &dup);
    if (rc < 0)
        return NULL;
    if (rc == 0)
        Py_RETURN_NONE;
    int bad = dup || (pos - 35) > 32;
    PyObject *fields[12] = {NULL};
    unsigned legacy = U16(body, 0);
    fields[0] = u16_long(legacy);
    fields[1] = PyBytes_FromStringAndSize((const char *)body + 35, pos - 35);
    fields[2] = u16s(body, pos, suites_end, 2);
    fields[3] = types;
    if (fields[0] == NULL || fields[1] == NULL || fields[2] == NULL)
        goto error;
    int highest_v = -1;
    for (int j = 0; j < norder; j++) {
        int k = order[j];
        Py_ssize_t start = spans.start[k], stop = spans.stop[k];
        PyObject *v = NULL;
        int slot;
        switch (CLIENT_WANTED[k]) {
        case EXT_SERVER_NAME:
            slot = 4;
            if (stop > start) {
                int b2 = 0;
                v = server_name(body, start, stop, &b2);
                if (v == NULL) {
                    if (!b2)
                        goto error;
                    bad = 1;
                    continue;
                }
            }
            else
                continue;
            break;
        case EXT_ALPN:
            slot = 5;
            v = protocol_names(body, start, stop);
            break;
        case EXT_SUPPORTED_VERSIONS:
            slot = 6;
            v = u16s(body, start, stop, 1);
            break;
        case EXT_SUPPORTED_GROUPS:
            slot = 7;
            v = u16s(body, start, stop, 2);
            break;
        case EXT_EC_POINT_FORMATS: {
            slot = 8;
            Py_ssize_t first = whole(body, start, stop, 1);
            if (first < 0) {
                v = Py_None;
                Py_INCREF(v);
                break;
            }
            v = PyList_New(stop - first);
            if (v == NULL)
                goto error;
            for (Py_ssize_t q = first; q < stop; q++) {
                PyObject *x = PyLong_FromLong(body[q]);
                if (x == NULL) {
                    Py_DECREF(v);
                    goto error;
                }
                PyList_SET_ITEM(v, q - first, x);
            }
            break;
        }
        default: /* EXT_SIGNATURE_ALGORITHMS */
            slot = 9;
            v = u16s(body, start, stop, 2);
            break;
        }
        if (v == NULL)
            goto error;
        if (v == Py_None && slot != 4) {
            Py_DECREF(v);
            bad = 1;
            continue;
        }
        Py_XSETREF(fields[slot], v);
        if (slot == 6) {
            Py_ssize_t m = PyList_GET_SIZE(v);
            for (Py_ssize_t q = 0; q < m; q++) {
                int x = (int)PyLong_AsLong(PyList_GET_ITEM(v, q));
                if (!is_grease(x) && x > highest_v)
                    highest_v = x;
            }
        }
    }
    /* the defaults of the fields not set */
    for (int slot = 4; slot <= 9; slot++) {
        if (fields[slot] == NULL) {
            if (slot == 4) {
                fields[slot] = Py_None;
                Py_INCREF(Py_None);
            }
            else if ((fields[slot] = PyList_New(0)) == NULL)
                goto error;
        }
    }
    fields[10] = Py_False;
    Py_INCREF(Py_False);
    fields[11] = bad ? Py_True : Py_False;
    Py_INCREF(fields[11]);
    PyObject *hello = new_hello(ClientHelloT, ch_off, fields, N_CH_FIELDS);
    if (hello != NULL && (*key = client_key(fields)) == NULL)
        Py_CLEAR(hello);
    for (int k = 0; k < 12; k++)
        Py_XDECREF(fields[k]);
    if (hello == NULL)
        return NULL;
    *malformed = bad;
    *highest = highest_v >= 0 ? highest_v : (int)legacy;
    return hello;
error:
    for (int k = 0; k < 12; k++)
        Py_XDECREF(fields[k]);
    return NULL;
}

static const int SERVER_WANTED[3] = {EXT_SUPPORTED_VERSIONS, EXT_ALPN, EXT_PRE_SHARED_KEY};

static const unsigned char HELLO_RETRY_RANDOM[32] = {
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c};

/* hello.parse_server_hello: a ServerHello, Py_None, or NULL on error */
static PyObject *
parse_server_hello(const unsigned char *body, Py_ssize_t n, int *malformed, int *version, int *hrr, PyObject **key)
{
    *key = NULL;
    if (n < 35)
        Py_RETURN_NONE;
    Py_ssize_t pos = 35 + body[34];
    if (pos + 3 > n)
        Py_RETURN_NONE;
    PyObject *types;
    Spans spans;
    int order[6], norder, dup;
    int rc = extensions(body, pos + 3, n, SERVER_WANTED, 3, &types, &spans, order, &norder, &dup);
    if (rc < 0)
        return NULL;
    if (rc == 0)
        Py_RETURN_NONE;
    int bad = dup || (pos - 35) > 32;
    unsigned legacy = U16(body, 0);
    long selected = -1;
    int psk = 0;
    PyObject *alpn = NULL;
    int retry = memcmp(body + 2, HELLO_RETRY_RANDOM, 32) == 0;
    for (int j = 0; j < norder; j++) {
        int k = order[j];
        Py_ssize_t start = spans.start[k], stop = spans.stop[k];
        if (SERVER_WANTED[k] == EXT_SUPPORTED_VERSIONS) {
            if (stop - start != 2)
                bad = 1;
            else
                selected = U16(body, start);
        }
        else if (SERVER_WANTED[k] == EXT_ALPN) {
            PyObject *names = protocol_names(body, start, stop);
            if (names == NULL) {
                Py_DECREF(types);
                return NULL;
            }
            if (names == Py_None || PyList_GET_SIZE(names) != 1)
                bad = 1;
            else {
                alpn = PyList_GET_ITEM(names, 0);
                Py_INCREF(alpn);
            }
            Py_DECREF(names);
        }
        else
            psk = 1;
    }
    PyObject *fields[9];
    fields[0] = u16_long(legacy);
    fields[1] = PyBytes_FromStringAndSize((const char *)body + 35, pos - 35);
    fields[2] = u16_long(U16(body, pos));
    fields[3] = types;
    fields[4] = selected >= 0 ? u16_long((unsigned)selected) : (Py_INCREF(Py_None), Py_None);
    fields[5] = alpn != NULL ? alpn : (Py_INCREF(Py_None), Py_None);
    fields[6] = psk ? Py_True : Py_False;
    fields[7] = retry ? Py_True : Py_False;
    fields[8] = bad ? Py_True : Py_False;
    Py_INCREF(fields[6]);
    Py_INCREF(fields[7]);
    Py_INCREF(fields[8]);
    PyObject *hello = NULL;
    if (fields[0] != NULL && fields[1] != NULL && fields[2] != NULL && fields[4] != NULL)
        hello = new_hello(ServerHelloT, sh_off, fields, N_SH_FIELDS);
    if (hello != NULL) {
        /* fingerprint._server_key */
        PyObject *pk = packed(&fields[3], 1);
        if (pk == NULL)
            Py_CLEAR(hello);
        else if (pk == Py_None)
            *key = pk;
        else {
            *key = PyTuple_Pack(5, fields[0], fields[4], fields[2], fields[5], pk);
            Py_DECREF(pk);
            if (*key == NULL)
                Py_CLEAR(hello);
        }
    }
    for (int k = 0; k < 9; k++)
        Py_XDECREF(fields[k]);
    if (hello == NULL)
        return NULL;
    *malformed = bad;
    *version = selected >= 0 ? (int)selected : (int)legacy;
    *hrr = retry;
    return hello;
}

/* --- the session ---------------------------------------------------------------------- */

static int
add_anomaly(Session *self, PyObject *name)
{
    return PySet_Add(self->anomalies, name);
}

/* session._not_tls */
static int
not_tls(Session *self)
{
    if (add_anomaly(self, A_NOT_TLS) < 0)
        return -1;
    half_to(&self->c, E_NOT_TLS);
    half_to(&self->s, E_NOT_TLS);
    return 0;
}

static int
established(Session *self)
{
    return self->c.mode == M_ENCRYPTED && self->s.mode == M_ENCRYPTED;
}

/* session._switch */
static void
do_switch(Session *self, Half *h)
{
    half_to(h, E_SWITCH);
    if (established(self) && NONE(self->established_ts)) {
        Py_INCREF(self->last_ts);
        Py_XSETREF(self->established_ts, self->last_ts);
    }
}

/* session._ccs_switches */
static int
ccs_switches(Session *self)
{
    if (!NONE(self->server_hello))
        return self->sh_version < TLS13;
    if (!NONE(self->first_server_hello))
        return self->fsh_version < TLS13;
    return NONE(self->client_hello) || self->ch_highest < TLS13;
}

static int
client_message(Session *self, HsEvent *ev)
{
    if (ev->mtype != CLIENT_HELLO || ev->body == NULL)
        return 0;
    self->c.keep_none = 1;
    if (ev->length > MAX_HELLO_BYTES)
        return 0;
    int malformed = 0, highest = 0;
    PyObject *key;
    PyObject *hello = parse_client_hello(ev->body, ev->blen, &malformed, &highest, &key);
    if (hello == NULL)
        return -1;
    Py_XSETREF(self->client_key, key != NULL ? key : Py_NewRef(Py_None));
    if ((hello == Py_None || malformed) && add_anomaly(self, A_BAD_HELLO) < 0) {
        Py_DECREF(hello);
        return -1;
    }
    Py_XSETREF(self->client_hello, hello);
    self->ch_highest = highest;
    return 0;
}

static int
server_message(Session *self, HsEvent *ev)
{
    if (ev->mtype == SERVER_HELLO) {
        if (ev->body == NULL || ev->length > MAX_HELLO_BYTES)
            return 0;
        int malformed = 0, version = 0, hrr = 0;
        PyObject *key;
        PyObject *hello = parse_server_hello(ev->body, ev->blen, &malformed, &version, &hrr, &key);
        if (hello == NULL)
            return -1;
        if ((hello == Py_None || malformed) && add_anomaly(self, A_BAD_HELLO) < 0) {
            Py_DECREF(hello);
            return -1;
        }
        if (hello == Py_None) {
            Py_DECREF(hello);
            return 0;
        }
        if (NONE(self->first_server_hello)) {
            Py_INCREF(hello);
            Py_XSETREF(self->first_server_hello, hello);
            self->fsh_version = version;
            Py_XSETREF(self->server_key, key);
        }
        else
            Py_XDECREF(key);
        if (!hrr && NONE(self->server_hello)) {
            Py_INCREF(hello);
            Py_XSETREF(self->server_hello, hello);
            self->sh_version = version;
            if (version >= TLS13)
                self->s.keep_none = 1; /* the rest of a TLS 1.3 server's handshake is encrypted */
        }
        Py_DECREF(hello);
    }
    else if (ev->mtype == CERTIFICATE) {
        if (ev->body == NULL || !NONE(self->server_cert) || NONE(self->server_hello) || self->sh_version >= TLS13)
            return 0;
        self->s.keep_none = 1;
        PyObject *body = PyBytes_FromStringAndSize((const char *)ev->body, ev->blen);
        if (body == NULL)
            return -1;
        PyObject *got = PyObject_CallOneArg(first_cert, body);
        Py_DECREF(body);
        if (got == NULL)
            return -1;
        if (!PyTuple_Check(got) || PyTuple_GET_SIZE(got) != 2) {
            Py_DECREF(got);
            PyErr_SetString(PyExc_TypeError, "first_certificate must return a pair");
            return -1;
        }
        PyObject *der = PyTuple_GET_ITEM(got, 0);
        if (der == Py_None) {
            int complete = PyObject_IsTrue(PyTuple_GET_ITEM(got, 1));
            Py_DECREF(got);
            if (complete < 0)
                return -1;
            if (!complete && add_anomaly(self, A_BAD_CERTIFICATE) < 0)
                return -1;
            return 0;
        }
        PyObject *summary = PyObject_CallOneArg(cert_summary, der);
        Py_DECREF(got);
        if (summary == NULL)
            return -1;
        if (!PyTuple_Check(summary) || PyTuple_GET_SIZE(summary) != 2) {
            Py_DECREF(summary);
            PyErr_SetString(PyExc_TypeError, "certificate_summary must return a pair");
            return -1;
        }
        int parsed = PyObject_IsTrue(PyTuple_GET_ITEM(summary, 1));
        if (parsed < 0 || (!parsed && add_anomaly(self, A_BAD_CERTIFICATE) < 0)) {
            Py_DECREF(summary);
            return -1;
        }
        PyObject *cert = PyTuple_GET_ITEM(summary, 0);
        Py_INCREF(cert);
        Py_XSETREF(self->server_cert, cert);
        Py_DECREF(summary);
    }
    else if (ev->mtype == SERVER_HELLO_DONE)
        self->s.saw_hello_done = 1;
    return 0;
}

/* session._handshake: 1 go on, 0 the direction stopped being parsed, -1 error */
static int
handshake(Session *self, Half *h, int fc, const unsigned char *chunk, Py_ssize_t n)
{
    Events e;
    e.ev = e.small;
    e.n = 0;
    e.cap = 32;
    int rc = 1;
    if (hs_feed(h, chunk, n, &e) < 0) {
        rc = -1;
        goto done;
    }
    for (Py_ssize_t i = 0; i < e.n; i++) {
        HsEvent *ev = &e.ev[i];
        if (ev->kind == EV_START) {
            if (fc && NONE(self->client_hello) && h->messages == 1 && ev->mtype != CLIENT_HELLO) {
                /* A client's first handshake message is its ClientHello (RFC 8446 section 4.1.2). */
                rc = not_tls(self) < 0 ? -1 : 0;
                goto done;
            }
            Py_ssize_t bound = keep_bound(h->is_client, h->keep_none, ev->mtype);
            if (bound >= 0 && ev->length > bound && add_anomaly(self, A_HANDSHAKE_TOO_LARGE) < 0) {
                rc = -1;
                goto done;
            }
        }
        else if ((fc ? client_message(self, ev) : server_message(self, ev)) < 0) {
            rc = -1;
            goto done;
        }
    }
done:
    ev_free(&e);
    return rc;
}

/* session._alert_bytes */
static int
alert_bytes(Session *self, Half *h, int fc, const unsigned char *chunk, Py_ssize_t n)
{
    Py_ssize_t total = h->alert_len + n, i = 0;
    int lead = h->alert_len;
#define AT(k) ((k) < lead ? h->alert_buf : chunk[(k) - lead])
    while (i + 2 <= total) {
        int level = AT(i), description = AT(i + 1);
        i += 2;
        if (level == FATAL)
            self->fatal_alert = 1;
        if (PyList_GET_SIZE(self->alerts) < MAX_ALERTS) {
            PyObject *a = PyObject_CallFunction(alert_fn, "iiO", level, description, fc ? Py_True : Py_False);
            if (a == NULL)
                return -1;
            int r = PyList_Append(self->alerts, a);
            Py_DECREF(a);
            if (r < 0)
                return -1;
        }
        else if (add_anomaly(self, A_TOO_MANY_ALERTS) < 0)
            return -1;
    }
    if (i < total) {
        h->alert_buf = AT(i);
        h->alert_len = 1;
    }
    else
        h->alert_len = 0;
#undef AT
    return 0;
}

enum { GO_ON = 1, STOP = 0, ERR = -1 };

/* one piece of a record body (an event of RecordReader.feed) */
static int
on_record(Session *self, Half *h, int fc, int ctype, const unsigned char *chunk, Py_ssize_t n, int first)
{
    switch (ctype) {
    case HANDSHAKE:
        if (n) {
            int r = handshake(self, h, fc, chunk, n);
            if (r <= 0)
                return r;
        }
        return GO_ON;
    case ALERT:
        return alert_bytes(self, h, fc, chunk, n) < 0 ? ERR : GO_ON;
    case CHANGE_CIPHER_SPEC:
        if (first) {
            h->sent_ccs = 1;
            if (ccs_switches(self)) {
                do_switch(self, h);
                return STOP;
            }
        }
        return GO_ON;
    case APPLICATION_DATA:
        if (first && !NONE(self->server_hello) && self->sh_version >= TLS13) {
            do_switch(self, h);
            return STOP;
        }
        return GO_ON;
    }
    return GO_ON; /* heartbeat */
}

/* session._records with records.RecordReader.feed */
static int
do_records(Session *self, Half *h, int fc, const unsigned char *d, Py_ssize_t n)
{
    if (h->rdead)
        return 0;
    Py_ssize_t pos = 0;
    int r;
    if (h->rremaining) {
        Py_ssize_t take = h->rremaining < n ? h->rremaining : n;
        h->rremaining -= take;
        pos = take;
        if ((r = on_record(self, h, fc, h->rtype, d, take, 0)) <= 0)
            return r;
    }
    while (pos < n) {
        int ctype, major;
        Py_ssize_t length;
        if (n - pos >= 5 && !h->rhdr_len) {
            ctype = d[pos];
            major = d[pos + 1];
            length = U16(d, pos + 3);
            pos += 5;
        }
        else {
            Py_ssize_t want = 5 - h->rhdr_len;
            Py_ssize_t take = n - pos < want ? n - pos : want;
            memcpy(h->rhdr + h->rhdr_len, d + pos, take);
            h->rhdr_len += (int)take;
            pos += take;
            if (h->rhdr_len < 5)
                return 0;
            h->rhdr_len = 0;
            ctype = h->rhdr[0];
            major = h->rhdr[1];
            length = U16(h->rhdr, 3);
        }
        PyObject *anomaly = NULL;
        if (ctype < CHANGE_CIPHER_SPEC || ctype > HEARTBEAT || major != 3 || length > MAX_RECORD_BYTES) {
            h->rdead = 1;
            if (!(ctype < CHANGE_CIPHER_SPEC || ctype > HEARTBEAT || major != 3))
                anomaly = A_RECORD_OVERSIZED;
            else if (h->records == 0) {
                if (fc)
                    return not_tls(self);
                anomaly = A_SERVER_NOT_TLS;
            }
            else
                anomaly = A_BAD_RECORD;
            if (add_anomaly(self, anomaly) < 0)
                return -1;
            half_to(h, E_BAD_FRAMING);
            return 0;
        }
        h->records++;
        Py_ssize_t end = pos + length;
        if (end > n) {
            h->rtype = ctype;
            h->rremaining = end - n;
            r = on_record(self, h, fc, ctype, d + pos, n - pos, 1);
            return r < 0 ? -1 : 0;
        }
        if ((r = on_record(self, h, fc, ctype, d + pos, length, 1)) <= 0)
            return r;
        pos = end;
    }
    return 0;
}

/* session._start plus what follows: the first bytes of a direction */
static int
do_start(Session *self, Half *h, int fc, const unsigned char *data, Py_ssize_t n)
{
    const unsigned char *buf = data;
    unsigned char *joined = NULL;
    if (h->start_len) {
        joined = PyMem_Malloc(h->start_len + n);
        if (joined == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(joined, h->start_buf, h->start_len);
        memcpy(joined + h->start_len, data, n);
        n += h->start_len;
        buf = joined;
    }
    int first = buf[0], rc = 0;
    if (!fc) {
        /* A server answers a ClientHello with a handshake record, or an alert. */
        if (first == HANDSHAKE || first == ALERT || first == CHANGE_CIPHER_SPEC) {
            half_to(h, E_TLS);
            rc = do_records(self, h, fc, buf, n);
        }
        else if ((rc = add_anomaly(self, A_SERVER_NOT_TLS)) == 0)
            half_to(h, E_NOT_TLS);
        goto done;
    }
    if (first == HANDSHAKE) {
        half_to(h, E_TLS);
        rc = do_records(self, h, fc, buf, n);
        goto done;
    }
    if (first & 0x80) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)buf, n);
        if (b == NULL) {
            rc = -1;
            goto done;
        }
        PyObject *verdict = PyObject_CallOneArg(looks_sslv2, b);
        Py_DECREF(b);
        if (verdict == NULL) {
            rc = -1;
            goto done;
        }
        int undecided = verdict == Py_None;
        int yes = undecided ? 0 : PyObject_IsTrue(verdict);
        Py_DECREF(verdict);
        if (yes < 0) {
            rc = -1;
            goto done;
        }
        Py_ssize_t total = n >= 2 ? ((((Py_ssize_t)buf[0] & 0x7F) << 8) | buf[1]) + 2 : 0;
        if (undecided || (yes && n < total)) {
            /* keep the first bytes until START can decide */
            unsigned char *keep = PyMem_Malloc(n);
            if (keep == NULL) {
                PyErr_NoMemory();
                rc = -1;
                goto done;
            }
            memcpy(keep, buf, n);
            PyMem_Free(h->start_buf);
            h->start_buf = keep;
            h->start_len = n;
            goto done;
        }
        if (yes) {
            PyMem_Free(h->start_buf);
            h->start_buf = NULL;
            h->start_len = 0;
            PyObject *rec = PyBytes_FromStringAndSize((const char *)buf, total);
            if (rec == NULL) {
                rc = -1;
                goto done;
            }
            PyObject *hello = PyObject_CallOneArg(parse_sslv2, rec);
            Py_DECREF(rec);
            if (hello == NULL) {
                rc = -1;
                goto done;
            }
            if (hello != Py_None) {
                PyObject *hv = PyObject_CallMethodNoArgs(hello, S_highest_version);
                PyObject *lv = hv ? PyObject_GetAttr(hello, S_legacy_version) : NULL;
                long highest = hv ? PyLong_AsLong(hv) : -1, legacy = lv ? PyLong_AsLong(lv) : -1;
                Py_XDECREF(hv);
                Py_XDECREF(lv);
                if (PyErr_Occurred()) {
                    Py_DECREF(hello);
                    rc = -1;
                    goto done;
                }
                Py_XSETREF(self->client_hello, hello);
                Py_XSETREF(self->client_key, Py_NewRef(Py_None)); /* an SSL 2.0 hello has no fingerprint */
                self->ch_highest = (int)highest;
                if (add_anomaly(self, A_SSLV2_HELLO) < 0) {
                    rc = -1;
                    goto done;
                }
                if ((legacy >> 8) == 3) {
                    half_to(h, E_SSLV2_COMPATIBLE);
                    if (n > total)
                        rc = do_records(self, h, fc, buf + total, n - total);
                    goto done;
                }
                /* SSL 2.0 itself: neither side is followed */
                self->sslv2_only = 1;
                half_to(h, E_SSLV2);
                half_to(&self->s, E_SSLV2);
                goto done;
            }
            Py_DECREF(hello);
        }
    }
    rc = not_tls(self);
done:
    PyMem_Free(joined);
    return rc;
}

static int
set_ts(Session *self, PyObject *now)
{
    if (NONE(self->first_ts)) {
        Py_INCREF(now);
        Py_INCREF(now);
        Py_XSETREF(self->first_ts, now);
        Py_XSETREF(self->last_ts, now);
        return 0;
    }
    int later;
    if (PyFloat_CheckExact(now) && PyFloat_CheckExact(self->last_ts))
        later = PyFloat_AS_DOUBLE(now) > PyFloat_AS_DOUBLE(self->last_ts);
    else if ((later = PyObject_RichCompareBool(now, self->last_ts, Py_GT)) < 0)
        return -1;
    if (later) {
        Py_INCREF(now);
        Py_SETREF(self->last_ts, now);
    }
    return 0;
}

static Py_ssize_t
session_mem(Session *self)
{
    /* A direction that stopped parsing let go of every buffer (half_to). */
    return (self->c.parsing ? half_mem(&self->c) : 0) + (self->s.parsing ? half_mem(&self->s) : 0);
}

static int
session_done(Session *self)
{
    return self->closed || (!self->c.parsing && !self->s.parsing);
}

/* mem_obj, done_obj, established_obj after a call changed the state; rc: the call's */
static int
sync_members(Session *self, int rc)
{
    Py_ssize_t mem = session_mem(self);
    if (mem != self->mem_now) {
        PyObject *m = PyLong_FromSsize_t(mem);
        if (m == NULL)
            return -1;
        Py_XSETREF(self->mem_obj, m);
        self->mem_now = mem;
    }
    PyObject *done = session_done(self) ? Py_True : Py_False;
    if (done != self->done_obj)
        Py_XSETREF(self->done_obj, Py_NewRef(done));
    PyObject *est = established(self) ? Py_True : Py_False;
    if (est != self->established_obj)
        Py_XSETREF(self->established_obj, Py_NewRef(est));
    return rc;
}

static PyObject *
Session_feed(Session *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "feed(from_client, data, now)");
        return NULL;
    }
    int fc = args[0] == Py_True ? 1 : args[0] == Py_False ? 0 : PyObject_IsTrue(args[0]);
    if (fc < 0)
        return NULL;
    PyObject *data = args[1];
    Py_buffer view;
    const unsigned char *p;
    Py_ssize_t n;
    int release = 0;
    if (PyBytes_CheckExact(data)) {
        p = (const unsigned char *)PyBytes_AS_STRING(data);
        n = PyBytes_GET_SIZE(data);
    }
    else {
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
            return NULL;
        p = view.buf;
        n = view.len;
        release = 1;
    }
    int rc = 0;
    Half *h = fc ? &self->c : &self->s;
    if (set_ts(self, args[2]) < 0)
        rc = -1;
    else {
        h->bytes += n;
        if (h->parsing && n) {
            if (h->mode == M_START)
                rc = do_start(self, h, fc, p, n);
            else
                rc = do_records(self, h, fc, p, n);
        }
    }
    if (release)
        PyBuffer_Release(&view);
    if (sync_members(self, rc) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Session_gap(Session *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "gap(from_client, nbytes)");
        return NULL;
    }
    int fc = PyObject_IsTrue(args[0]);
    if (fc < 0)
        return NULL;
    long long nbytes = PyLong_AsLongLong(args[1]);
    if (nbytes == -1 && PyErr_Occurred())
        return NULL;
    if (nbytes <= 0)
        Py_RETURN_NONE;
    Half *h = fc ? &self->c : &self->s;
    h->bytes += nbytes;
    self->missed_bytes += nbytes;
    if (h->parsing) {
        if (add_anomaly(self, A_GAP) < 0)
            return NULL;
        half_to(h, E_GAP);
    }
    if (sync_members(self, 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Session_close(Session *self, PyObject *now)
{
    if (set_ts(self, now) < 0)
        return NULL;
    if (self->closed)
        Py_RETURN_NONE;
    self->closed = 1;
    if (!established(self) && self->c.bytes > 0 && !self->fatal_alert && !self->sslv2_only) {
        int a = PySet_Contains(self->anomalies, A_NOT_TLS);
        int b = a ? a : PySet_Contains(self->anomalies, A_SERVER_NOT_TLS);
        if (a < 0 || b < 0)
            return NULL;
        if (!b && add_anomaly(self, A_TRUNCATED_HANDSHAKE) < 0)
            return NULL;
    }
    half_to(&self->c, E_CLOSE);
    half_to(&self->s, E_CLOSE);
    if (sync_members(self, 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* --- result(): session._Result.result in C ------------------------------------------------
 *
 * The record's tls object, once per connection; the Python mixin
 * session._Result is the reference (TlsSessionPy uses it) and the docstring of
 * its result() says what each field is.  Written here because, per short
 * connection, the Python one was ~230 bytecodes (with _resumed, the ALPN
 * comprehension and http.syntax.text) of a record that costs little else.
 * Version and cipher names come from the same dicts (hello.VERSION_NAMES,
 * ciphers.CIPHER_SUITES), the fingerprints from the same memoised functions
 * (fingerprint.client_fingerprints / server_fingerprints, called once per
 * connection each and cached as the mixin caches them). */

static PyObject *VERSION_NAMES_D, *CIPHER_SUITES_D, *client_fps_fn, *server_fps_fn;
enum { R_VERSION, R_NEGOTIATED, R_CIPHER, R_SNI, R_ALPN_OFFERED, R_ALPN, R_RESUMED, R_ESTABLISHED, R_HELLO_RETRY,
       R_ALERTS, R_JA3, R_JA3S, R_JA4, R_JA4S, R_SERVER_CERT, R_CLIENT_BYTES, R_SERVER_BYTES, N_RESULT };
/* in the order of the reference's dict */
static const char *RESULT_KEYS[N_RESULT] = {"version", "negotiated", "cipher", "sni", "alpn_offered", "alpn", "resumed",
                                            "established", "hello_retry", "alerts", "ja3", "ja3s", "ja4", "ja4s",
                                            "server_cert", "client_bytes", "server_bytes"};
static PyObject *result_keys[N_RESULT], *S_dns_names, *result_template;

/* hello.version_name / ciphers.cipher_name: names[code], else "0x" and 4 hex digits */
static PyObject *
code_name(PyObject *names, PyObject *code)
{
    PyObject *name = PyDict_GetItemWithError(names, code);
    if (name != NULL)
        return Py_NewRef(name);
    if (PyErr_Occurred())
        return NULL;
    long v = PyLong_AsLong(code);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    if (v < 0 || v > 0xFFFF) { /* a 16-bit code of a parsed hello */
        PyErr_Format(PyExc_ValueError, "not a 16-bit code: %ld", v);
        return NULL;
    }
    char buf[8];
    snprintf(buf, sizeof(buf), "0x%04lx", v);
    return PyUnicode_FromString(buf);
}

/* http.syntax.text: UTF-8, else surrogateescape (the same str either way) */
static PyObject *
wire_text(PyObject *b)
{
    if (!PyBytes_Check(b)) {
        PyErr_SetString(PyExc_TypeError, "an ALPN name must be bytes");
        return NULL;
    }
    return PyUnicode_DecodeUTF8(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), "surrogateescape");
}

/* Memo.get(key) of the memo fingerprint.<name> (looked up at each call: tests swap
 * it): the remembered value (a new reference) counted as a hit, or NULL, counted
 * nowhere (the Python function that computes it on a miss asks Memo.get again,
 * which counts the miss): what a hit costs without the two Python frames of
 * client_fingerprints and Memo.get (tests/unit/test_tls_session_c.py: the
 * memos' counts and contents are the same as with the Python path). */
static PyObject *fp_module_dict, *S__values, *S_hits, *S_CLIENT_MEMO, *S_SERVER_MEMO, *INT_1;

static PyObject *
memo_hit(PyObject *name, PyObject *key)
{
    PyObject *memo = PyDict_GetItemWithError(fp_module_dict, name);
    if (memo == NULL)
        return NULL;
    PyObject *values = PyObject_GetAttr(memo, S__values);
    if (values == NULL)
        return NULL;
    PyObject *got = PyDict_Check(values) ? PyDict_GetItemWithError(values, key) : NULL;
    Py_XINCREF(got);
    Py_DECREF(values);
    if (got == NULL || got == Py_None) {
        Py_XDECREF(got);
        return NULL;
    }
    PyObject *hits = PyObject_GetAttr(memo, S_hits);
    PyObject *more = hits ? PyNumber_Add(hits, INT_1) : NULL;
    int r = more ? PyObject_SetAttr(memo, S_hits, more) : -1;
    Py_XDECREF(hits);
    Py_XDECREF(more);
    if (r < 0)
        Py_CLEAR(got);
    return got;
}

/* (ja3, ja4) / (ja3s, ja4s) of a hello, once: cached in *cache; ``memo``: the
 * memo's name, when the hello has fingerprints and a key */
static PyObject *
fingerprints(PyObject **cache, PyObject *fn, PyObject *hello, PyObject *key, PyObject *memo)
{
    if (NONE(*cache)) {
        PyObject *fps = NULL;
        if (memo != NULL && !NONE(key)) {
            fps = memo_hit(memo, key);
            if (fps == NULL && PyErr_Occurred())
                return NULL;
        }
        if (fps == NULL) {
            PyObject *args[2] = {hello, key};
            fps = PyObject_Vectorcall(fn, args, 2, NULL);
        }
        if (fps == NULL)
            return NULL;
        if (!PyTuple_Check(fps) || PyTuple_GET_SIZE(fps) != 2) {
            Py_DECREF(fps);
            PyErr_SetString(PyExc_TypeError, "fingerprints must be a pair");
            return NULL;
        }
        Py_XSETREF(*cache, fps);
    }
    return *cache;
}

/* session._Result._resumed, for a session with a server_hello */
static PyObject *
resumed(Session *self, PyObject *sh)
{
    if (self->sh_version >= TLS13)
        return Py_NewRef(FIELD(sh, sh_off[SH_PSK]));
    if (self->s.saw_hello_done)
        Py_RETURN_FALSE; /* a full handshake: ServerHelloDone ends the server's first flight */
    if (self->s.sent_ccs)
        Py_RETURN_TRUE; /* RFC 5246 section 7.3: abbreviated, ChangeCipherSpec right after ServerHello */
    PyObject *sid = FIELD(sh, sh_off[SH_SESSION_ID]);
    int r = PyObject_IsTrue(sid);
    if (r <= 0 || NONE(self->client_hello))
        return r < 0 ? NULL : Py_NewRef(Py_False);
    return PyObject_RichCompare(sid, FIELD(self->client_hello, ch_off[CH_SESSION_ID]), Py_EQ);
}

static PyObject *
Session_result(Session *self, PyObject *unused)
{
    PyObject *ch = self->client_hello, *final = self->server_hello, *first = self->first_server_hello;
    if (ch == NULL || final == NULL || first == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "result() of a cleared session");
        return NULL;
    }
    if ((ch != Py_None && !Py_IS_TYPE(ch, (PyTypeObject *)ClientHelloT)) ||
        (final != Py_None && !Py_IS_TYPE(final, (PyTypeObject *)ServerHelloT)) ||
        (first != Py_None && !Py_IS_TYPE(first, (PyTypeObject *)ServerHelloT))) {
        PyErr_SetString(PyExc_TypeError, "result(): a hello of another type");
        return NULL;
    }
    PyObject *sh = final != Py_None ? final : first;
    PyObject *v[N_RESULT] = {NULL};
    PyObject *out = NULL;
    PyObject *cfp = NULL, *sfp = NULL; /* borrowed from the caches */
    if (ch == Py_None) {
        v[R_SNI] = Py_NewRef(Py_None);
        v[R_ALPN_OFFERED] = PyList_New(0);
    }
    else {
        /* an SSL 2.0-format hello has no fingerprints: client_fingerprints says so */
        PyObject *memo = FIELD(ch, ch_off[CH_SSLV2]) == Py_False ? S_CLIENT_MEMO : NULL;
        if ((cfp = fingerprints(&self->client_fp, client_fps_fn, ch, self->client_key, memo)) == NULL)
            goto done;
        v[R_SNI] = Py_NewRef(FIELD(ch, ch_off[CH_SNI]));
        PyObject *alpn = FIELD(ch, ch_off[CH_ALPN]);
        if (!PyList_Check(alpn)) {
            PyErr_SetString(PyExc_TypeError, "ClientHello.alpn must be a list");
            goto done;
        }
        Py_ssize_t k = PyList_GET_SIZE(alpn);
        if ((v[R_ALPN_OFFERED] = PyList_New(k)) == NULL)
            goto done;
        for (Py_ssize_t i = 0; i < k; i++) {
            PyObject *t = wire_text(PyList_GET_ITEM(alpn, i));
            if (t == NULL)
                goto done;
            PyList_SET_ITEM(v[R_ALPN_OFFERED], i, t);
        }
    }
    if (first != Py_None && (sfp = fingerprints(&self->server_fp, server_fps_fn, first, self->server_key, S_SERVER_MEMO)) == NULL)
        goto done;
    if (sh != Py_None) {
        PyObject *code = FIELD(sh, sh_off[SH_SELECTED]); /* ServerHello.version */
        if (code == Py_None)
            code = FIELD(sh, sh_off[SH_LEGACY]);
        v[R_VERSION] = code_name(VERSION_NAMES_D, code);
        v[R_CIPHER] = code_name(CIPHER_SUITES_D, FIELD(sh, sh_off[SH_CIPHER]));
    }
    else if (ch != Py_None) {
        PyObject *code = PyLong_FromLong(self->ch_highest); /* highest_version() */
        v[R_VERSION] = code ? code_name(VERSION_NAMES_D, code) : NULL;
        Py_XDECREF(code);
        v[R_CIPHER] = Py_NewRef(Py_None);
    }
    else {
        v[R_VERSION] = Py_NewRef(Py_None);
        v[R_CIPHER] = Py_NewRef(Py_None);
    }
    v[R_NEGOTIATED] = PyBool_FromLong(sh != Py_None);
    if (final != Py_None && FIELD(final, sh_off[SH_ALPN]) != Py_None)
        v[R_ALPN] = wire_text(FIELD(final, sh_off[SH_ALPN]));
    else
        v[R_ALPN] = Py_NewRef(Py_None);
    v[R_RESUMED] = final != Py_None ? resumed(self, final) : Py_NewRef(Py_None);
    v[R_ESTABLISHED] = PyBool_FromLong(established(self));
    v[R_HELLO_RETRY] = first != Py_None ? Py_NewRef(FIELD(first, sh_off[SH_HRR])) : Py_NewRef(Py_False);
    v[R_ALERTS] = PySequence_List(self->alerts);
    v[R_JA3] = Py_NewRef(cfp ? PyTuple_GET_ITEM(cfp, 0) : Py_None);
    v[R_JA3S] = Py_NewRef(sfp ? PyTuple_GET_ITEM(sfp, 0) : Py_None);
    v[R_JA4] = Py_NewRef(cfp ? PyTuple_GET_ITEM(cfp, 1) : Py_None);
    v[R_JA4S] = Py_NewRef(sfp ? PyTuple_GET_ITEM(sfp, 1) : Py_None);
    if (NONE(self->server_cert))
        v[R_SERVER_CERT] = Py_NewRef(Py_None);
    else if (!PyDict_Check(self->server_cert)) {
        PyErr_SetString(PyExc_TypeError, "server_cert must be a dict");
        goto done;
    }
    else {
        /* dict(cert, dns_names=list(cert["dns_names"])): a copy the record owns */
        PyObject *names = PyDict_GetItemWithError(self->server_cert, S_dns_names);
        if (names == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, S_dns_names);
            goto done;
        }
        PyObject *copy = PyDict_Copy(self->server_cert), *list = copy ? PySequence_List(names) : NULL;
        if (list == NULL || PyDict_SetItem(copy, S_dns_names, list) < 0) {
            Py_XDECREF(copy);
            Py_XDECREF(list);
            goto done;
        }
        Py_DECREF(list);
        v[R_SERVER_CERT] = copy;
    }
    v[R_CLIENT_BYTES] = PyLong_FromLongLong(self->c.bytes);
    v[R_SERVER_BYTES] = PyLong_FromLongLong(self->s.bytes);
    for (int i = 0; i < N_RESULT; i++)
        if (v[i] == NULL)
            goto done;
    /* a copy of a dict of the keys (a memcpy of its table, room left for TlsFlow's
     * "starttls"), whose values are then replaced: no insertion, no resize */
    if ((out = PyDict_Copy(result_template)) == NULL)
        goto done;
    for (int i = 0; i < N_RESULT; i++) {
        if (PyDict_SetItem(out, result_keys[i], v[i]) < 0) {
            Py_CLEAR(out);
            break;
        }
    }
done:
    for (int i = 0; i < N_RESULT; i++)
        Py_XDECREF(v[i]);
    return out;
}

/* --- the type ------------------------------------------------------------------------- */

static PyObject *
Session_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Session *self = (Session *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    half_init(&self->c, 1);
    half_init(&self->s, 0);
    PyObject **none[] = {&self->client_hello, &self->first_server_hello, &self->server_hello, &self->server_cert,
                         &self->first_ts, &self->last_ts, &self->established_ts, &self->client_fp, &self->server_fp,
                         &self->client_key, &self->server_key};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        *none[i] = Py_NewRef(Py_None);
    self->mem_obj = PyLong_FromLong(0);
    self->done_obj = Py_NewRef(Py_False);
    self->established_obj = Py_NewRef(Py_False);
    self->alerts = PyList_New(0);
    self->anomalies = PySet_New(NULL);
    if (self->alerts == NULL || self->anomalies == NULL || self->mem_obj == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
Session_init(Session *self, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "TlsSession() takes no arguments");
        return -1;
    }
    return 0;
}

static int
Session_traverse(Session *self, visitproc visit, void *arg)
{
    /* not the type: a Python subclass's subtype_traverse visits it */
    Py_VISIT(self->client_hello);
    Py_VISIT(self->first_server_hello);
    Py_VISIT(self->server_hello);
    Py_VISIT(self->server_cert);
    Py_VISIT(self->alerts);
    Py_VISIT(self->anomalies);
    Py_VISIT(self->first_ts);
    Py_VISIT(self->last_ts);
    Py_VISIT(self->established_ts);
    Py_VISIT(self->client_fp);
    Py_VISIT(self->server_fp);
    Py_VISIT(self->client_key);
    Py_VISIT(self->server_key);
    return 0;
}

static int
Session_clear(Session *self)
{
    Py_CLEAR(self->client_hello);
    Py_CLEAR(self->first_server_hello);
    Py_CLEAR(self->server_hello);
    Py_CLEAR(self->server_cert);
    Py_CLEAR(self->alerts);
    Py_CLEAR(self->anomalies);
    Py_CLEAR(self->first_ts);
    Py_CLEAR(self->last_ts);
    Py_CLEAR(self->established_ts);
    Py_CLEAR(self->client_fp);
    Py_CLEAR(self->server_fp);
    Py_CLEAR(self->client_key);
    Py_CLEAR(self->server_key);
    Py_CLEAR(self->mem_obj);
    Py_CLEAR(self->done_obj);
    Py_CLEAR(self->established_obj);
    return 0;
}

static void
Session_dealloc(Session *self)
{
    /* A static type: a Python subclass's subtype_dealloc drops its type's reference. */
    PyObject_GC_UnTrack(self);
    Session_clear(self);
    half_release(&self->c);
    half_release(&self->s);
    Py_TYPE(self)->tp_free((PyObject *)self);
}




static PyObject *
Session_get_client_bytes(Session *self, void *c)
{
    return PyLong_FromLongLong(self->c.bytes);
}

static PyObject *
Session_get_server_bytes(Session *self, void *c)
{
    return PyLong_FromLongLong(self->s.bytes);
}

static PyObject *
Session_get_missed_bytes(Session *self, void *c)
{
    return PyLong_FromLongLong(self->missed_bytes);
}

static PyObject *
Session_get_closed(Session *self, void *c)
{
    return PyBool_FromLong(self->closed);
}

static PyObject *
Session_get_fatal_alert(Session *self, void *c)
{
    return PyBool_FromLong(self->fatal_alert);
}

static PyObject *
Session_get_sslv2_only(Session *self, void *c)
{
    return PyBool_FromLong(self->sslv2_only);
}

static PyObject *
Session_get_server_sent_ccs(Session *self, void *c)
{
    return PyBool_FromLong(self->s.sent_ccs);
}

static PyObject *
Session_get_server_saw_hello_done(Session *self, void *c)
{
    return PyBool_FromLong(self->s.saw_hello_done);
}

static PyObject *
Session_get_modes(Session *self, void *c)
{
    return Py_BuildValue("(ss)", MODE_NAMES[self->c.mode], MODE_NAMES[self->s.mode]);
}

static PyGetSetDef Session_getset[] = {
    {"client_bytes", (getter)Session_get_client_bytes, NULL, NULL, NULL},
    {"server_bytes", (getter)Session_get_server_bytes, NULL, NULL, NULL},
    {"missed_bytes", (getter)Session_get_missed_bytes, NULL, NULL, NULL},
    {"closed", (getter)Session_get_closed, NULL, NULL, NULL},
    {"_fatal_alert", (getter)Session_get_fatal_alert, NULL, NULL, NULL},
    {"_sslv2_only", (getter)Session_get_sslv2_only, NULL, NULL, NULL},
    {"server_sent_ccs", (getter)Session_get_server_sent_ccs, NULL, NULL, NULL},
    {"server_saw_hello_done", (getter)Session_get_server_saw_hello_done, NULL, NULL, NULL},
    {"_modes", (getter)Session_get_modes, NULL, "(client mode, server mode), as Mode values", NULL},
    {NULL},
};

static PyMemberDef Session_members[] = {
    {"client_hello", T_OBJECT_EX, offsetof(Session, client_hello), READONLY, NULL},
    {"first_server_hello", T_OBJECT_EX, offsetof(Session, first_server_hello), READONLY, NULL},
    {"server_hello", T_OBJECT_EX, offsetof(Session, server_hello), READONLY, NULL},
    {"server_cert", T_OBJECT_EX, offsetof(Session, server_cert), READONLY, NULL},
    {"first_ts", T_OBJECT_EX, offsetof(Session, first_ts), READONLY, NULL},
    {"last_ts", T_OBJECT_EX, offsetof(Session, last_ts), READONLY, NULL},
    {"established_ts", T_OBJECT_EX, offsetof(Session, established_ts), READONLY, NULL},
    {"alerts", T_OBJECT_EX, offsetof(Session, alerts), READONLY, NULL},
    {"mem", T_OBJECT_EX, offsetof(Session, mem_obj), READONLY, "Bytes held in buffers."},
    {"done", T_OBJECT_EX, offsetof(Session, done_obj), READONLY, "Nothing more will be parsed."},
    {"established", T_OBJECT_EX, offsetof(Session, established_obj), READONLY,
     "Both directions switched to encrypted records."},
    {"anomalies", T_OBJECT_EX, offsetof(Session, anomalies), READONLY, NULL},
    {"_client_memo_key", T_OBJECT_EX, offsetof(Session, client_key), READONLY, "fingerprint._client_key(client_hello)"},
    {"_server_memo_key", T_OBJECT_EX, offsetof(Session, server_key), READONLY, "fingerprint._server_key(first_server_hello)"},
    /* result()'s cache of the fingerprints (session._Result) */
    {"_client_fp", T_OBJECT_EX, offsetof(Session, client_fp), 0, NULL},
    {"_server_fp", T_OBJECT_EX, offsetof(Session, server_fp), 0, NULL},
    {NULL},
};

static PyMethodDef Session_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))Session_feed, METH_FASTCALL, "feed(from_client, data, now)"},
    {"gap", (PyCFunction)(void (*)(void))Session_gap, METH_FASTCALL, "gap(from_client, nbytes)"},
    {"close", (PyCFunction)Session_close, METH_O, "close(now)"},
    {"result", (PyCFunction)Session_result, METH_NOARGS, "The record's tls object (session._Result.result in C)."},
    {NULL},
};

static PyTypeObject SessionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sniffd.tls._session.Session",
    .tp_basicsize = sizeof(Session),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "TlsSession's machinery in C (see sniffd/tls/session.py)",
    .tp_new = Session_new,
    .tp_init = (initproc)Session_init,
    .tp_dealloc = (destructor)Session_dealloc,
    .tp_traverse = (traverseproc)Session_traverse,
    .tp_clear = (inquiry)Session_clear,
    .tp_methods = Session_methods,
    .tp_members = Session_members,
    .tp_getset = Session_getset,
};

/* --- Flow: TlsFlow's per-segment and per-connection work ---------------------------------
 *
 * sniffd.tls.flow.TlsFlow is this type with the Python mixin flow._FlowRules (the
 * calls the flow table makes rarely: note, note_at, end, tick, open_transactions);
 * flow.TlsFlowPy is the reference, all in Python, and tests/unit/test_tls_session_c.py
 * holds the two equal after every call.  Here: __init__, feed_data (the flow
 * table's call for every in-order segment), feed, close, _write and take, which
 * were ~330 bytecodes and ~10 Python frames per short connection.  The session is
 * a C Session (flow.py's setup gives its type) whose feed/gap/close/result are
 * called directly.  flow.py owns the rules' values: flow_setup() gives the
 * session, record, done-list and meter types and the end_reasons that end a
 * connection at its closing packet (_ENDED_BY_PACKET). */

static PyObject *FLOW_SESSION_T, *FLOW_RECORD_T, *FLOW_DONE_T, *FLOW_METER_T, *FLOW_ENDED_BY_PACKET;
static const char *RECORD_FIELDS[] = {"ts", "tls", "duration_ms", "end_reason", "anomalies"};
static const char *DONE_FIELDS[] = {"done"};
static Py_ssize_t record_off[5], done_off[1];
static PyObject *S_add, *S_http_bytes, *S_done, *S_starttls, *round_fn, *FLOAT_0, *FLOAT_1000, *INT_3, *EMPTY_TUPLE;

typedef struct {
    PyObject_HEAD
    PyObject *session, *pairing, *loose, *anomalies, *meter, *last_ts, *done_at, *starttls;
    Py_ssize_t charged;
    char written;
} Flow;

static PyObject *
Flow_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (FLOW_SESSION_T == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "sniffd.tls._session.flow_setup() was not called");
        return NULL;
    }
    Flow *self = (Flow *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    PyObject **none[] = {&self->session, &self->pairing, &self->loose, &self->anomalies, &self->meter,
                         &self->last_ts, &self->done_at, &self->starttls};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        *none[i] = Py_NewRef(Py_None);
    return (PyObject *)self;
}

/* TlsFlowPy.__init__(meter=None, anomalies=(), starttls=None) */
static int
Flow_init(Flow *self, PyObject *args, PyObject *kwds)
{
    static const char *names[] = {"meter", "anomalies", "starttls"};
    PyObject *given[3] = {Py_None, NULL, Py_None};
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    if (nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "TlsFlow(meter=None, anomalies=(), starttls=None)");
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        given[i] = PyTuple_GET_ITEM(args, i);
    if (kwds != NULL) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(kwds, &pos, &k, &v)) {
            int i = 0;
            while (i < 3 && !(PyUnicode_Check(k) && PyUnicode_CompareWithASCIIString(k, names[i]) == 0))
                i++;
            if (i == 3 || i < nargs) {
                PyErr_Format(PyExc_TypeError, "TlsFlow(): unexpected or repeated argument %R", k);
                return -1;
            }
            given[i] = v;
        }
    }
    /* TlsSessionC(): its type's tp_new, Session_new (it has no __init__ of its own) */
    PyObject *session = ((PyTypeObject *)FLOW_SESSION_T)->tp_new((PyTypeObject *)FLOW_SESSION_T, EMPTY_TUPLE, NULL);
    if (session == NULL)
        return -1;
    Py_XSETREF(self->session, session);
    PyObject *done = PyList_New(0);
    if (done == NULL)
        return -1;
    PyObject *pairing = new_hello(FLOW_DONE_T, done_off, &done, 1); /* _Done() */
    Py_DECREF(done);
    if (pairing == NULL)
        return -1;
    Py_XSETREF(self->pairing, pairing);
    PyObject *loose = PyList_New(0);
    if (loose == NULL)
        return -1;
    Py_XSETREF(self->loose, loose);
    PyObject *anomalies = PySet_New(given[1]);
    if (anomalies == NULL)
        return -1;
    Py_XSETREF(self->anomalies, anomalies);
    PyObject *meter = given[0] != Py_None ? Py_NewRef(given[0]) : PyObject_CallNoArgs(FLOW_METER_T);
    if (meter == NULL)
        return -1;
    Py_XSETREF(self->meter, meter);
    Py_XSETREF(self->starttls, Py_NewRef(given[2]));
    Py_XSETREF(self->last_ts, Py_NewRef(Py_None));
    Py_XSETREF(self->done_at, Py_NewRef(Py_None));
    self->charged = 0;
    self->written = 0;
    return 0;
}

static Session *
flow_session(Flow *self)
{
    if (self->session == NULL || !PyObject_TypeCheck(self->session, &SessionType)) {
        PyErr_SetString(PyExc_TypeError, "TlsFlow.session must be a C TlsSession");
        return NULL;
    }
    return (Session *)self->session;
}

/* TlsFlowPy._after_feed: charge what the session holds to the meter; note when the handshake was over */
static int
flow_after_feed(Flow *self, Session *s, PyObject *now)
{
    Py_ssize_t mem = s->mem_now;
    if (mem != self->charged) {
        PyObject *delta = PyLong_FromSsize_t(mem - self->charged);
        if (delta == NULL)
            return -1;
        PyObject *r = PyObject_CallMethodOneArg(self->meter, S_add, delta);
        Py_DECREF(delta);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
        self->charged = mem;
    }
    if (NONE(self->done_at) && session_done(s))
        Py_XSETREF(self->done_at, Py_NewRef(now));
    return 0;
}

/* feed_data(from_client, data, now, ack=None): feed for one in-order data chunk */
static PyObject *
Flow_feed_data(Flow *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "feed_data(from_client, data, now, ack=None)");
        return NULL;
    }
    Session *s = flow_session(self);
    if (s == NULL)
        return NULL;
    PyObject *r = Session_feed(s, args, 3);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_XSETREF(self->last_ts, Py_NewRef(args[2]));
    if (NONE(self->done_at) && flow_after_feed(self, s, args[2]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* feed(from_client, chunks, now, ack=None): HttpSession.feed's chunks: bytes (at now),
 * (bytes, ts), (bytes, ts, ack), or an int (bytes lost) */
static PyObject *
Flow_feed(Flow *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "feed(from_client, chunks, now, ack=None)");
        return NULL;
    }
    Session *s = flow_session(self);
    if (s == NULL)
        return NULL;
    PyObject *it = PyObject_GetIter(args[1]);
    if (it == NULL)
        return NULL;
    PyObject *c;
    while ((c = PyIter_Next(it)) != NULL) {
        PyObject *r;
        if (PyLong_CheckExact(c)) {
            PyObject *a[2] = {args[0], c};
            r = Session_gap(s, a, 2);
        }
        else if (PyTuple_CheckExact(c)) {
            if (PyTuple_GET_SIZE(c) < 2) {
                PyErr_SetString(PyExc_IndexError, "tuple index out of range");
                r = NULL;
            }
            else {
                PyObject *a[3] = {args[0], PyTuple_GET_ITEM(c, 0), PyTuple_GET_ITEM(c, 1)};
                r = Session_feed(s, a, 3);
                if (r != NULL)
                    Py_XSETREF(self->last_ts, Py_NewRef(PyTuple_GET_ITEM(c, 1)));
            }
        }
        else {
            PyObject *a[3] = {args[0], c, args[2]};
            r = Session_feed(s, a, 3);
            if (r != NULL)
                Py_XSETREF(self->last_ts, Py_NewRef(args[2]));
        }
        Py_DECREF(c);
        if (r == NULL) {
            Py_DECREF(it);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    if (NONE(self->done_at) && flow_after_feed(self, s, args[2]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* TlsFlowPy._write(end_reason, end): the connection's one record */
static int
flow_write(Flow *self, PyObject *end_reason, PyObject *end)
{
    Session *s = flow_session(self);
    if (s == NULL)
        return -1;
    self->written = 1;
    if (self->charged) {
        PyObject *held = PyObject_GetAttr(self->meter, S_http_bytes);
        PyObject *charged = held ? PyLong_FromSsize_t(self->charged) : NULL;
        PyObject *left = charged ? PyNumber_Subtract(held, charged) : NULL;
        Py_XDECREF(held);
        Py_XDECREF(charged);
        int r = left ? PyObject_SetAttr(self->meter, S_http_bytes, left) : -1;
        Py_XDECREF(left);
        if (r < 0)
            return -1;
        self->charged = 0;
    }
    PyObject *first = NONE(s->first_ts) ? end : s->first_ts;
    /* round(max(0.0, end - first) * 1000.0, 3) */
    PyObject *diff = PyNumber_Subtract(end, first);
    if (diff == NULL)
        return -1;
    int later = PyFloat_CheckExact(diff) ? PyFloat_AS_DOUBLE(diff) > 0.0 : PyObject_RichCompareBool(diff, FLOAT_0, Py_GT);
    if (later < 0) {
        Py_DECREF(diff);
        return -1;
    }
    PyObject *ms = PyNumber_Multiply(later ? diff : FLOAT_0, FLOAT_1000);
    Py_DECREF(diff);
    if (ms == NULL)
        return -1;
    PyObject *rargs[2] = {ms, INT_3};
    PyObject *duration = PyObject_Vectorcall(round_fn, rargs, 2, NULL);
    Py_DECREF(ms);
    if (duration == NULL)
        return -1;
    PyObject *fields[5] = {first, NULL, duration, end_reason, NULL};
    PyObject *rec = NULL, *done = NULL;
    fields[1] = Session_result(s, NULL);
    if (fields[1] == NULL || PyDict_SetItem(fields[1], S_starttls, self->starttls) < 0)
        goto error;
    if ((fields[4] = PyNumber_Or(self->anomalies, s->anomalies)) == NULL)
        goto error;
    if ((rec = new_hello(FLOW_RECORD_T, record_off, fields, 5)) == NULL) /* TlsRecord(...) */
        goto error;
    if ((done = PyObject_GetAttr(self->pairing, S_done)) == NULL)
        goto error;
    if (!PyList_Check(done)) {
        PyErr_SetString(PyExc_TypeError, "pairing.done must be a list");
        goto error;
    }
    if (PyList_Append(done, rec) < 0)
        goto error;
    Py_DECREF(done);
    Py_DECREF(rec);
    Py_DECREF(duration);
    Py_DECREF(fields[1]);
    Py_DECREF(fields[4]);
    return 0;
error:
    Py_XDECREF(done);
    Py_XDECREF(rec);
    Py_DECREF(duration);
    Py_XDECREF(fields[1]);
    Py_XDECREF(fields[4]);
    return -1;
}

static PyObject *
Flow__write(Flow *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_write(end_reason, end)");
        return NULL;
    }
    if (flow_write(self, args[0], args[1]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* close(reason, now, why="end_of_input"): the connection ended */
static PyObject *
Flow_close(Flow *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "close(reason, now, why='end_of_input')");
        return NULL;
    }
    if (self->written)
        Py_RETURN_NONE;
    PyObject *reason = args[0], *now = args[1];
    PyObject *why = nargs == 3 ? args[2] : NULL;
    PyObject *why_owned = NULL;
    if (why == NULL && (why = why_owned = PyUnicode_FromString("end_of_input")) == NULL)
        return NULL;
    int r = PyObject_IsTrue(reason);
    if (r > 0 && NONE(self->done_at))
        r = PySet_Add(self->anomalies, reason);
    Session *s = r < 0 ? NULL : flow_session(self);
    int by_packet = s == NULL ? -1 : PySet_Contains(FLOW_ENDED_BY_PACKET, why);
    PyObject *out = NULL;
    if (by_packet >= 0) {
        PyObject *end = by_packet || NONE(self->last_ts) ? now : self->last_ts;
        Py_INCREF(end);
        PyObject *c = Session_close(s, end);
        if (c != NULL) {
            Py_DECREF(c);
            if (flow_write(self, why, end) == 0)
                out = Py_NewRef(Py_None);
        }
        Py_DECREF(end);
    }
    Py_XDECREF(why_owned);
    return out;
}

/* take(): the finished records (pairing.done), handed over */
static PyObject *
Flow_take(Flow *self, PyObject *unused)
{
    PyObject *done = PyObject_GetAttr(self->pairing, S_done);
    if (done == NULL)
        return NULL;
    int r = PyObject_IsTrue(done);
    if (r > 0) {
        PyObject *fresh = PyList_New(0);
        r = fresh ? PyObject_SetAttr(self->pairing, S_done, fresh) : -1;
        Py_XDECREF(fresh);
    }
    if (r < 0) {
        Py_DECREF(done);
        return NULL;
    }
    return done;
}

static int
Flow_traverse(Flow *self, visitproc visit, void *arg)
{
    Py_VISIT(self->session);
    Py_VISIT(self->pairing);
    Py_VISIT(self->loose);
    Py_VISIT(self->anomalies);
    Py_VISIT(self->meter);
    Py_VISIT(self->last_ts);
    Py_VISIT(self->done_at);
    Py_VISIT(self->starttls);
    return 0;
}

static int
Flow_clear(Flow *self)
{
    Py_CLEAR(self->session);
    Py_CLEAR(self->pairing);
    Py_CLEAR(self->loose);
    Py_CLEAR(self->anomalies);
    Py_CLEAR(self->meter);
    Py_CLEAR(self->last_ts);
    Py_CLEAR(self->done_at);
    Py_CLEAR(self->starttls);
    return 0;
}

static void
Flow_dealloc(Flow *self)
{
    PyObject_GC_UnTrack(self);
    Flow_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef Flow_members[] = {
    {"session", T_OBJECT_EX, offsetof(Flow, session), READONLY, NULL},
    {"pairing", T_OBJECT_EX, offsetof(Flow, pairing), 0, "pairing.done: the finished records"},
    {"loose", T_OBJECT_EX, offsetof(Flow, loose), 0, NULL},
    {"anomalies", T_OBJECT_EX, offsetof(Flow, anomalies), 0, NULL},
    {"meter", T_OBJECT_EX, offsetof(Flow, meter), READONLY, NULL},
    {"last_ts", T_OBJECT_EX, offsetof(Flow, last_ts), 0, NULL},
    {"done_at", T_OBJECT_EX, offsetof(Flow, done_at), 0, NULL},
    {"starttls", T_OBJECT_EX, offsetof(Flow, starttls), 0, NULL},
    {"charged", T_PYSSIZET, offsetof(Flow, charged), 0, NULL},
    {"written", T_BOOL, offsetof(Flow, written), 0, NULL},
    {NULL},
};

static PyMethodDef Flow_methods[] = {
    {"feed_data", (PyCFunction)(void (*)(void))Flow_feed_data, METH_FASTCALL, "feed_data(from_client, data, now, ack=None)"},
    {"feed", (PyCFunction)(void (*)(void))Flow_feed, METH_FASTCALL, "feed(from_client, chunks, now, ack=None)"},
    {"close", (PyCFunction)(void (*)(void))Flow_close, METH_FASTCALL, "close(reason, now, why='end_of_input')"},
    {"_write", (PyCFunction)(void (*)(void))Flow__write, METH_FASTCALL, "_write(end_reason, end)"},
    {"take", (PyCFunction)Flow_take, METH_NOARGS, "take(): the finished records"},
    {NULL},
};

static PyTypeObject FlowType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sniffd.tls._session.Flow",
    .tp_basicsize = sizeof(Flow),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "TlsFlow's per-segment work in C (see sniffd/tls/flow.py)",
    .tp_new = Flow_new,
    .tp_init = (initproc)Flow_init,
    .tp_dealloc = (destructor)Flow_dealloc,
    .tp_traverse = (traverseproc)Flow_traverse,
    .tp_clear = (inquiry)Flow_clear,
    .tp_methods = Flow_methods,
    .tp_members = Flow_members,
};

/* flow_setup(session_type, record_type, done_type, meter_type, ended_by_packet): flow.py's values */
static PyObject *
mod_flow_setup(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "flow_setup(session_type, record_type, done_type, meter_type, ended_by_packet)");
        return NULL;
    }
    if (!PyType_Check(args[0]) || !PyType_IsSubtype((PyTypeObject *)args[0], &SessionType) ||
        ((PyTypeObject *)args[0])->tp_init != SessionType.tp_init || ((PyTypeObject *)args[0])->tp_new != Session_new ||
        !PyFrozenSet_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "flow_setup(): a Session subclass and a frozenset of end_reasons");
        return NULL;
    }
    if (slot_offsets(args[1], RECORD_FIELDS, 5, record_off) < 0 || slot_offsets(args[2], DONE_FIELDS, 1, done_off) < 0)
        return NULL;
    PyObject **slots[] = {&FLOW_SESSION_T, &FLOW_RECORD_T, &FLOW_DONE_T, &FLOW_METER_T, &FLOW_ENDED_BY_PACKET};
    for (int i = 0; i < 5; i++)
        Py_XSETREF(*slots[i], Py_NewRef(args[i]));
    Py_RETURN_NONE;
}

/* --- the module ----------------------------------------------------------------------- */

static PyObject *
attr_of(const char *module, const char *name)
{
    PyObject *m = PyImport_ImportModule(module);
    if (m == NULL)
        return NULL;
    PyObject *v = PyObject_GetAttrString(m, name);
    Py_DECREF(m);
    return v;
}

/* The hello parsers alone, for tests/unit/test_tls_session_c.py: (hello or None,
 * highest_version() / version as the session keeps it, its fingerprint memo key). */
static PyObject *
mod_parse_hello(PyObject *arg, int client)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int malformed = 0, version = -1, hrr = 0;
    PyObject *key = NULL;
    PyObject *hello = client ? parse_client_hello(view.buf, view.len, &malformed, &version, &key)
                             : parse_server_hello(view.buf, view.len, &malformed, &version, &hrr, &key);
    PyBuffer_Release(&view);
    if (hello == NULL)
        return NULL;
    if (hello == Py_None)
        return Py_BuildValue("(NOO)", hello, Py_None, Py_None);
    return Py_BuildValue("(NiN)", hello, version, key);
}

static PyObject *
mod_parse_client_hello(PyObject *m, PyObject *arg)
{
    return mod_parse_hello(arg, 1);
}

static PyObject *
mod_parse_server_hello(PyObject *m, PyObject *arg)
{
    return mod_parse_hello(arg, 0);
}

/* detect.looks_like_tls_client_hello_py in C: the flow table asks it of every
 * connection's first client bytes that start with 22.  True, False, or None
 * (more bytes needed); the same checks in the same order as the reference. */
static PyObject *
mod_looks_like_tls_client_hello(PyObject *m, PyObject *arg)
{
    Py_buffer view;
    const unsigned char *d;
    Py_ssize_t n;
    int release = 0;
    if (PyBytes_CheckExact(arg)) {
        d = (const unsigned char *)PyBytes_AS_STRING(arg);
        n = PyBytes_GET_SIZE(arg);
    }
    else {
        if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
            return NULL;
        d = view.buf;
        n = view.len;
        release = 1;
    }
    unsigned char got[6];
    int have = 0;
    Py_ssize_t pos = 0;
    PyObject *verdict = Py_True;
    while (have < 6) {
        if (pos >= n) {
            verdict = Py_None;
            break;
        }
        if (d[pos] != HANDSHAKE || (pos + 1 < n && d[pos + 1] != 3) || (pos + 2 < n && d[pos + 2] > 4)) {
            verdict = Py_False;
            break;
        }
        if (pos + 5 > n) {
            verdict = Py_None;
            break;
        }
        Py_ssize_t length = U16(d, pos + 3);
        if (length == 0 || length > 16384) { /* RFC 5246 section 6.2.1 */
            verdict = Py_False;
            break;
        }
        Py_ssize_t avail = n - pos - 5 < length ? n - pos - 5 : length;
        Py_ssize_t take = avail < 6 - have ? avail : 6 - have;
        memcpy(got + have, d + pos + 5, take);
        have += (int)take;
        if (!have) {
            verdict = Py_None;
            break;
        }
        if (got[0] != CLIENT_HELLO || (have >= 4 && (((Py_ssize_t)got[1] << 16) | (got[2] << 8) | got[3]) < 41) ||
            (have >= 5 && got[4] != 3) || (have >= 6 && got[5] > 4)) {
            verdict = Py_False;
            break;
        }
        if (avail < length) {
            verdict = have < 6 ? Py_None : Py_True;
            break;
        }
        pos += 5 + length;
    }
    if (release)
        PyBuffer_Release(&view);
    Py_INCREF(verdict);
    return verdict;
}

static PyMethodDef module_methods[] = {
    {"looks_like_tls_client_hello", mod_looks_like_tls_client_hello, METH_O,
     "detect.looks_like_tls_client_hello_py in C"},
    {"parse_client_hello", mod_parse_client_hello, METH_O, "(ClientHello or None, its highest_version())"},
    {"parse_server_hello", mod_parse_server_hello, METH_O, "(ServerHello or None, its version)"},
    {"flow_setup", (PyCFunction)(void (*)(void))mod_flow_setup, METH_FASTCALL,
     "flow_setup(session_type, record_type, done_type, meter_type, ended_by_packet)"},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sniffd.tls._session", "TlsSession's machinery in C (see sniffd/tls/session.py).", -1,
    module_methods,
};

PyMODINIT_FUNC
PyInit__session(void)
{
    struct {
        PyObject **slot;
        const char *module, *name;
    } wanted[] = {
        {&ClientHelloT, "sniffd.tls.hello", "ClientHello"},
        {&ServerHelloT, "sniffd.tls.hello", "ServerHello"},
        {&parse_sslv2, "sniffd.tls.hello", "parse_sslv2_client_hello"},
        {&looks_sslv2, "sniffd.tls.detect", "looks_like_sslv2_client_hello"},
        {&first_cert, "sniffd.tls.x509", "first_certificate"},
        {&cert_summary, "sniffd.tls.x509", "certificate_summary"},
        {&alert_fn, "sniffd.tls.alerts", "alert"},
        {&VERSION_NAMES_D, "sniffd.tls.hello", "VERSION_NAMES"},
        {&CIPHER_SUITES_D, "sniffd.tls.ciphers", "CIPHER_SUITES"},
        {&client_fps_fn, "sniffd.tls.fingerprint", "client_fingerprints"},
        {&server_fps_fn, "sniffd.tls.fingerprint", "server_fingerprints"},
        {&A_NOT_TLS, "sniffd.tls.anomalies", "NOT_TLS"},
        {&A_SERVER_NOT_TLS, "sniffd.tls.anomalies", "SERVER_NOT_TLS"},
        {&A_SSLV2_HELLO, "sniffd.tls.anomalies", "SSLV2_HELLO"},
        {&A_BAD_RECORD, "sniffd.tls.anomalies", "BAD_RECORD"},
        {&A_RECORD_OVERSIZED, "sniffd.tls.anomalies", "RECORD_OVERSIZED"},
        {&A_HANDSHAKE_TOO_LARGE, "sniffd.tls.anomalies", "HANDSHAKE_TOO_LARGE"},
        {&A_BAD_HELLO, "sniffd.tls.anomalies", "BAD_HELLO"},
        {&A_BAD_CERTIFICATE, "sniffd.tls.anomalies", "BAD_CERTIFICATE"},
        {&A_GAP, "sniffd.tls.anomalies", "GAP"},
        {&A_TRUNCATED_HANDSHAKE, "sniffd.tls.anomalies", "TRUNCATED_HANDSHAKE"},
        {&A_TOO_MANY_ALERTS, "sniffd.tls.anomalies", "TOO_MANY_ALERTS"},
    };
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
        if (*wanted[i].slot == NULL && (*wanted[i].slot = attr_of(wanted[i].module, wanted[i].name)) == NULL)
            return NULL;
    }
    if (!PyDict_Check(VERSION_NAMES_D) || !PyDict_Check(CIPHER_SUITES_D)) {
        PyErr_SetString(PyExc_TypeError, "sniffd.tls._session: VERSION_NAMES and CIPHER_SUITES must be dicts");
        return NULL;
    }
    if ((result_template = _PyDict_NewPresized(N_RESULT + 1)) == NULL)
        return NULL;
    for (int i = 0; i < N_RESULT; i++)
        if ((result_keys[i] = PyUnicode_InternFromString(RESULT_KEYS[i])) == NULL ||
            PyDict_SetItem(result_template, result_keys[i], Py_None) < 0)
            return NULL;
    if ((S_dns_names = PyUnicode_InternFromString("dns_names")) == NULL ||
        (S__values = PyUnicode_InternFromString("_values")) == NULL ||
        (S_hits = PyUnicode_InternFromString("hits")) == NULL ||
        (S_CLIENT_MEMO = PyUnicode_InternFromString("CLIENT_MEMO")) == NULL ||
        (S_SERVER_MEMO = PyUnicode_InternFromString("SERVER_MEMO")) == NULL)
        return NULL;
    PyObject *fp_module = PyImport_ImportModule("sniffd.tls.fingerprint");
    if (fp_module == NULL)
        return NULL;
    fp_module_dict = Py_NewRef(PyModule_GetDict(fp_module)); /* kept for the process, as the module is */
    Py_DECREF(fp_module);
    if (slot_offsets(ClientHelloT, CH_FIELDS, N_CH_FIELDS, ch_off) < 0 ||
        slot_offsets(ServerHelloT, SH_FIELDS, N_SH_FIELDS, sh_off) < 0)
        return NULL;
    if ((S_highest_version = PyUnicode_InternFromString("highest_version")) == NULL ||
        (S_legacy_version = PyUnicode_InternFromString("legacy_version")) == NULL)
        return NULL;
    if ((S_add = PyUnicode_InternFromString("add")) == NULL ||
        (S_http_bytes = PyUnicode_InternFromString("http_bytes")) == NULL ||
        (S_done = PyUnicode_InternFromString("done")) == NULL ||
        (S_starttls = PyUnicode_InternFromString("starttls")) == NULL ||
        (FLOAT_0 = PyFloat_FromDouble(0.0)) == NULL || (FLOAT_1000 = PyFloat_FromDouble(1000.0)) == NULL ||
        (INT_3 = PyLong_FromLong(3)) == NULL || (INT_1 = PyLong_FromLong(1)) == NULL ||
        (EMPTY_TUPLE = PyTuple_New(0)) == NULL || (round_fn = attr_of("builtins", "round")) == NULL)
        return NULL;
    if (PyType_Ready(&SessionType) < 0 || PyType_Ready(&FlowType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&SessionType);
    Py_INCREF(&FlowType);
    if (PyModule_AddObject(m, "Flow", (PyObject *)&FlowType) < 0) {
        Py_DECREF(&FlowType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObject(m, "Session", (PyObject *)&SessionType) < 0 ||
        PyModule_AddIntConstant(m, "MAX_HELLO_BYTES", MAX_HELLO_BYTES) < 0 ||
        PyModule_AddIntConstant(m, "MAX_CERTIFICATE_BYTES", MAX_CERTIFICATE_BYTES) < 0 ||
        PyModule_AddIntConstant(m, "MAX_ALERTS", MAX_ALERTS) < 0 ||
        PyModule_AddIntConstant(m, "MAX_RECORD_BYTES", MAX_RECORD_BYTES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
