/* sniffd.http._fields: the common message head in C.
 *
 *   fields(block, names, max_count, max_bytes) -> (headers, count, nbytes) | None
 *   head(...): the start line and the fields at once (see head() below)
 *
 * `block` holds the field lines of one header section (after the start
 * line, without the empty line that ends it), each ended by CRLF or a bare
 * LF.  When every line is a plain field -- a token name, a colon, a value --
 * it returns the headers dict sniffd records (names lowercased, values with
 * surrounding spaces and tabs stripped, decoded as UTF-8 or, for bytes that
 * are not, with surrogateescape; a repeated name joined with ", "), the
 * number of fields and their bytes (each line's length plus 2).  Anything
 * else -- obs-fold, a line without a colon, a name that is not a token or
 * has whitespace before its colon, more than max_count fields or max_bytes
 * bytes -- gives None, and the Python reference (MessageReader._fields in
 * sniffd/http/reader.py) does the whole section, with the anomalies to
 * name.  tests/unit/test_http_fields.py holds the two equal on every input
 * this accepts.
 *
 * `names` is the reader's cache of header names (bytes -> lowercase str):
 * looked up first, and new token names are added while it holds fewer than
 * 512.  This exists because the per-field Python loop was the largest cost
 * of a message once sniffd framed HTTP itself.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define NAMES_MAX 512

/* tchar, RFC 9110 section 5.6.2 */
static unsigned char is_tchar[256];

static void
init_tchar(void)
{
    const char *t = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for (; *t; t++)
        is_tchar[(unsigned char)*t] = 1;
}

static PyObject *
name_of(const char *p, Py_ssize_t n, PyObject *names)
{
    PyObject *raw = PyBytes_FromStringAndSize(p, n);
    if (raw == NULL)
        return NULL;
    PyObject *key = PyDict_GetItemWithError(names, raw);
    if (key != NULL) {
        Py_DECREF(raw);
        Py_INCREF(key);
        return key;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(raw);
        return NULL;
    }
    char low[256];
    char *buf = n <= (Py_ssize_t)sizeof(low) ? low : PyMem_Malloc(n);
    if (buf == NULL) {
        Py_DECREF(raw);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = p[i];
        buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    key = PyUnicode_DecodeASCII(buf, n, "strict");
    if (buf != low)
        PyMem_Free(buf);
    if (key != NULL && PyDict_GET_SIZE(names) < NAMES_MAX && PyDict_SetItem(names, raw, key) < 0) {
        Py_CLEAR(key);
    }
    Py_DECREF(raw);
    return key;
}

/* The field lines in p[0:size]: 1 and *out set (a new dict), 0 to decline,
 * -1 on error. */
static int
parse_fields(const char *p, Py_ssize_t size, PyObject *names, Py_ssize_t max_count, Py_ssize_t max_bytes,
             PyObject **out, Py_ssize_t *count_out, Py_ssize_t *nbytes_out)
{
    PyObject *headers = PyDict_New();
    if (headers == NULL)
        return -1;
    Py_ssize_t count = 0, nbytes = 0, pos = 0;
    while (pos < size) {
        const char *line = p + pos;
        const char *nl = memchr(line, '\n', (size_t)(size - pos));
        Py_ssize_t len = nl ? (Py_ssize_t)(nl - line) : size - pos;
        pos += len + 1;
        if (len > 0 && line[len - 1] == '\r')
            len--;
        if (len == 0)
            continue;
        if (line[0] == ' ' || line[0] == '\t')
            goto decline; /* obs-fold */
        const char *colon = memchr(line, ':', (size_t)len);
        if (colon == NULL || colon == line)
            goto decline;
        for (const char *c = line; c < colon; c++)
            if (!is_tchar[(unsigned char)*c])
                goto decline;
        count++;
        nbytes += len + 2;
        if (count > max_count || nbytes > max_bytes)
            goto decline;
        const char *v = colon + 1, *end = line + len;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        PyObject *key = name_of(line, colon - line, names);
        if (key == NULL)
            goto fail;
        PyObject *val = PyUnicode_DecodeUTF8(v, end - v, "surrogateescape");
        if (val == NULL) {
            Py_DECREF(key);
            goto fail;
        }
        PyObject *old = PyDict_GetItemWithError(headers, key);
        int rc;
        if (old != NULL) {
            /* RFC 9110 section 5.3: repeated fields combine with ", ". */
            PyObject *joined = PyUnicode_FromFormat("%U, %U", old, val);
            rc = joined == NULL ? -1 : PyDict_SetItem(headers, key, joined);
            Py_XDECREF(joined);
        }
        else if (PyErr_Occurred()) {
            rc = -1;
        }
        else {
            rc = PyDict_SetItem(headers, key, val);
        }
        Py_DECREF(key);
        Py_DECREF(val);
        if (rc < 0)
            goto fail;
    }
    *out = headers;
    *count_out = count;
    *nbytes_out = nbytes;
    return 1;
decline:
    Py_DECREF(headers);
    return 0;
fail:
    Py_DECREF(headers);
    return -1;
}

static PyObject *
fields(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyBytes_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "fields(block: bytes, names: dict, max_count: int, max_bytes: int)");
        return NULL;
    }
    Py_ssize_t max_count = PyLong_AsSsize_t(args[2]);
    Py_ssize_t max_bytes = PyLong_AsSsize_t(args[3]);
    if ((max_count == -1 || max_bytes == -1) && PyErr_Occurred())
        return NULL;
    PyObject *headers;
    Py_ssize_t count, nbytes;
    int rc = parse_fields(PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), args[1], max_count, max_bytes,
                          &headers, &count, &nbytes);
    if (rc < 0)
        return NULL;
    if (rc == 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(Nnn)", headers, count, nbytes);
}

/* head(data, start, eol, fields_end, is_request, names, max_count, max_bytes, max_uri)
 *   -> (method, target, version, headers, count, nbytes)      (a request)
 *    | (status, reason, version, headers, count, nbytes)      (a response)
 *    | None
 *
 * The whole head of the common message, whose start line is data[start:eol]
 * (a CR before eol is dropped) and whose field lines are
 * data[eol+1:fields_end]: a request line "token SP target SP HTTP/1.x"
 * (target non-empty, without spaces, tabs, control bytes or DEL, at most
 * max_uri bytes) or a status line "HTTP/1.x SP ddd [SP reason]", and plain
 * fields (see fields()).  None for anything else: the Python reference
 * (syntax.request_line / syntax.status_line and MessageReader._fields)
 * parses those, leniently, and names what was odd. */
static PyObject *
head(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9 || !PyBytes_Check(args[0]) || !PyDict_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "head(data, start, eol, fields_end, is_request, names, max_count, max_bytes, max_uri)");
        return NULL;
    }
    const char *d = PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    Py_ssize_t eol = PyLong_AsSsize_t(args[2]);
    Py_ssize_t fields_end = PyLong_AsSsize_t(args[3]);
    int is_request = PyObject_IsTrue(args[4]);
    Py_ssize_t max_count = PyLong_AsSsize_t(args[6]);
    Py_ssize_t max_bytes = PyLong_AsSsize_t(args[7]);
    Py_ssize_t max_uri = PyLong_AsSsize_t(args[8]);
    if (PyErr_Occurred())
        return NULL;
    if (start < 0 || start > eol || eol >= size || fields_end < eol + 1 || fields_end > size)
        Py_RETURN_NONE;
    const char *line = d + start;
    Py_ssize_t len = eol - start;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    PyObject *a = NULL, *b = NULL, *version = NULL, *headers = NULL;
    Py_ssize_t count = 0, nbytes = 0;
    if (len < 12)
        Py_RETURN_NONE;
    if (is_request) {
        Py_ssize_t m = 0;
        while (m < len && is_tchar[(unsigned char)line[m]])
            m++;
        if (m == 0 || m >= len || line[m] != ' ')
            Py_RETURN_NONE;
        const char *t = line + m + 1, *end = line + len - 9;
        if (end <= t || end[0] != ' ' || memcmp(end + 1, "HTTP/1.", 7) != 0 || (end[8] != '1' && end[8] != '0'))
            Py_RETURN_NONE;
        if (end - t > max_uri)
            Py_RETURN_NONE;
        for (const char *c = t; c < end; c++) {
            unsigned char u = (unsigned char)*c;
            if (u <= 0x20 || u == 0x7f)
                Py_RETURN_NONE;
        }
        a = PyUnicode_DecodeASCII(line, m, "strict");
        b = a ? PyUnicode_DecodeUTF8(t, end - t, "surrogateescape") : NULL;
        version = b ? PyUnicode_FromString(end[8] == '1' ? "1.1" : "1.0") : NULL;
    }
    else {
        if (memcmp(line, "HTTP/1.", 7) != 0 || (line[7] != '1' && line[7] != '0') || line[8] != ' ')
            Py_RETURN_NONE;
        if (!(line[9] >= '0' && line[9] <= '9' && line[10] >= '0' && line[10] <= '9' && line[11] >= '0' && line[11] <= '9'))
            Py_RETURN_NONE;
        if (len > 12 && line[12] != ' ')
            Py_RETURN_NONE;
        long status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
        a = PyLong_FromLong(status);
        b = a ? PyUnicode_DecodeUTF8(line + 13, len > 13 ? len - 13 : 0, "surrogateescape") : NULL;
        version = b ? PyUnicode_FromString(line[7] == '1' ? "1.1" : "1.0") : NULL;
    }
    if (version == NULL)
        goto fail;
    int rc = parse_fields(d + eol + 1, fields_end - eol - 1, args[5], max_count, max_bytes, &headers, &count, &nbytes);
    if (rc < 0)
        goto fail;
    if (rc == 0) {
        Py_DECREF(a);
        Py_DECREF(b);
        Py_DECREF(version);
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(NNNNnn)", a, b, version, headers, count, nbytes);
fail:
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(version);
    return NULL;
}

static PyMethodDef methods[] = {
    {"fields", (PyCFunction)(void (*)(void))fields, METH_FASTCALL,
     "fields(block, names, max_count, max_bytes) -> (headers, count, nbytes) | None"},
    {"head", (PyCFunction)(void (*)(void))head, METH_FASTCALL,
     "head(data, start, eol, fields_end, is_request, names, max_count, max_bytes, max_uri) -> tuple | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sniffd.http._fields", "A header section's common case in C (see _fields.c)", -1, methods,
};

PyMODINIT_FUNC
PyInit__fields(void)
{
    init_tchar();
    return PyModule_Create(&module);
}
