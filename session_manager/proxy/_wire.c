/* The proxy's per-request wire work at native speed (session_manager/proxy/wire.py).
 *
 * The parser for the common message: one whole, plain HTTP/1.1 request or
 * response in one read, taken apart in one call instead of a Python callback per header.
 *
 * It is a strict subset of what httptools (llhttp) accepts, giving the same parts: whatever it
 * does not recognise exactly (another version, a line ending that is not CRLF, an obs-fold, a
 * byte outside the conservative character sets, Transfer-Encoding, a second Content-Length,
 * Upgrade, Expect, a Connection other than keep-alive, a body not exactly all there, bytes
 * after the message, a head past the limits) it declines with None and the caller feeds the
 * bytes to httptools as always. So it can only make the common case cheaper, never accept what
 * the edge would refuse. session_manager/proxy/wire.py documents the contract; the property
 * test (tests/unit/session_manager/proxy/test_wire.py) holds it against httptools.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

/* RFC 9110 tchar. */
static unsigned char TCHAR[256];
/* field-value and reason-phrase bytes: VCHAR, SP, HTAB (obs-text declined). */
static unsigned char FIELD[256];
/* request-target bytes: unreserved, sub-delims, ":@/?%" (nothing to quote or escape). */
static unsigned char TARGET[256];

static void
init_tables(void)
{
    const char *tchar_extra = "!#$%&'*+-.^_`|~";
    const char *target_extra = "-._~!$&'()*+,;=:@/?%";
    for (int c = 0; c < 256; c++) {
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        TCHAR[c] = (unsigned char)(alnum || (c != 0 && strchr(tchar_extra, c) != NULL));
        TARGET[c] = (unsigned char)(alnum || (c != 0 && strchr(target_extra, c) != NULL));
        FIELD[c] = (unsigned char)((c >= 0x21 && c <= 0x7e) || c == ' ' || c == '\t');
    }
}

/* bytes.lower() of one byte: ASCII only. */
static inline char
ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static int
ieq(const char *p, Py_ssize_t n, const char *lower)
{
    /* p[0:n] equals the lower-case ASCII `lower`, ignoring case. */
    if ((Py_ssize_t)strlen(lower) != n) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ascii_lower(p[i]) != lower[i]) {
            return 0;
        }
    }
    return 1;
}

#define DECLINE (-1)
#define FAILED (-2)

/* Parse the header lines from `p` up to and including the blank line.
 *
 * Appends (name, value) to `headers` (names lower-cased when `lower`), sets `*body_len` from
 * the one Content-Length (-1: none) and returns the position after the blank line; DECLINE
 * for anything not plain, FAILED with a Python error set.
 */
static Py_ssize_t
parse_headers(const char *data, Py_ssize_t p, Py_ssize_t end, int lower, Py_ssize_t max_headers,
              PyObject *headers, long long *body_len)
{
    Py_ssize_t count = 0;
    *body_len = -1;
    for (;;) {
        if (p + 1 < end && data[p] == '\r' && data[p + 1] == '\n') {
            return p + 2;
        }
        Py_ssize_t name = p;
        while (p < end && TCHAR[(unsigned char)data[p]]) {
            p++;
        }
        if (p == name || p >= end || data[p] != ':') {
            return DECLINE;
        }
        Py_ssize_t name_len = p - name;
        p++;
        while (p < end && (data[p] == ' ' || data[p] == '\t')) {
            p++;
        }
        Py_ssize_t value = p;
        while (p < end && FIELD[(unsigned char)data[p]]) {
            p++;
        }
        if (p + 1 >= end || data[p] != '\r' || data[p + 1] != '\n') {
            return DECLINE;
        }
        Py_ssize_t value_len = p - value;
        if (value_len > 0 && (data[p - 1] == ' ' || data[p - 1] == '\t')) {
            return DECLINE; /* trailing whitespace: httptools' handling is its own */
        }
        p += 2;
        if (++count > max_headers) {
            return DECLINE;
        }
        const char *n = data + name;
        const char *v = data + value;
        if (ieq(n, name_len, "content-length")) {
            if (*body_len >= 0 || value_len == 0 || value_len > 15) {
                return DECLINE;
            }
            long long length = 0;
            for (Py_ssize_t i = 0; i < value_len; i++) {
                if (v[i] < '0' || v[i] > '9') {
                    return DECLINE;
                }
                length = length * 10 + (v[i] - '0');
            }
            *body_len = length;
        }
        else if (ieq(n, name_len, "transfer-encoding") || ieq(n, name_len, "upgrade") ||
                 ieq(n, name_len, "expect")) {
            return DECLINE;
        }
        else if (ieq(n, name_len, "connection") && !ieq(v, value_len, "keep-alive")) {
            return DECLINE;
        }
        PyObject *name_obj = PyBytes_FromStringAndSize(n, name_len);
        if (name_obj == NULL) {
            return FAILED;
        }
        if (lower) {
            char *s = PyBytes_AS_STRING(name_obj);
            for (Py_ssize_t i = 0; i < name_len; i++) {
                s[i] = ascii_lower(s[i]);
            }
        }
        PyObject *pair = Py_BuildValue("(Ny#)", name_obj, v, value_len);
        if (pair == NULL) {
            return FAILED;
        }
        int appended = PyList_Append(headers, pair);
        Py_DECREF(pair);
        if (appended < 0) {
            return FAILED;
        }
    }
}

/* The headers from `p` into `headers`, then exactly the body: its start, or DECLINE / FAILED.
 *
 * A request without Content-Length has no body; an answer without one is httptools' (it runs
 * until the connection closes).
 */
static Py_ssize_t
headers_and_body(const char *data, Py_ssize_t p, Py_ssize_t end, int request,
                 Py_ssize_t max_headers, PyObject *headers, long long *body_len)
{
    p = parse_headers(data, p, end, request, max_headers, headers, body_len);
    if (p < 0) {
        return p;
    }
    if (*body_len < 0) {
        if (!request) {
            return DECLINE;
        }
        *body_len = 0;
    }
    return (long long)(end - p) == *body_len ? p : DECLINE;
}

/* A request line: the position after it, else DECLINE. */
static Py_ssize_t
request_line(const char *data, Py_ssize_t end, Py_ssize_t *method_len, Py_ssize_t *target,
             Py_ssize_t *target_len)
{
    if (end >= 4 && memcmp(data, "GET ", 4) == 0) {
        *method_len = 3;
    }
    else if (end >= 5 && memcmp(data, "POST ", 5) == 0) {
        *method_len = 4;
    }
    else {
        return DECLINE;
    }
    Py_ssize_t p = *target = *method_len + 1;
    if (p >= end || data[p] != '/') {
        return DECLINE;
    }
    while (p < end && TARGET[(unsigned char)data[p]]) {
        p++;
    }
    *target_len = p - *target;
    if (end - p < 11 || memcmp(data + p, " HTTP/1.1\r\n", 11) != 0) {
        return DECLINE;
    }
    return p + 11;
}

/* A status line: the position after it, else DECLINE. */
static Py_ssize_t
status_line(const char *data, Py_ssize_t end, int *status)
{
    if (end < 13 || memcmp(data, "HTTP/1.1 ", 9) != 0) {
        return DECLINE;
    }
    *status = 0;
    for (int i = 9; i < 12; i++) {
        if (data[i] < '0' || data[i] > '9') {
            return DECLINE;
        }
        *status = *status * 10 + (data[i] - '0');
    }
    /* No body by definition (1xx, 204, 304), or not a status at all: httptools' business. */
    if (*status < 200 || *status > 599 || *status == 204 || *status == 304 || data[12] != ' ') {
        return DECLINE;
    }
    Py_ssize_t p = 13;
    while (p < end && FIELD[(unsigned char)data[p]]) {
        p++;
    }
    if (p + 1 >= end || data[p] != '\r' || data[p + 1] != '\n') {
        return DECLINE;
    }
    return p + 2;
}

/* parse_request (`request`) or parse_response: (data, max_headers, limit), where the limit is
 * the head's size for a request and the body's for an answer.
 */
static PyObject *
parse(PyObject *const *args, Py_ssize_t nargs, int request)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "expected (data, max_headers, limit)");
        return NULL;
    }
    Py_ssize_t max_headers = PyLong_AsSsize_t(args[1]);
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if ((max_headers == -1 || limit == -1) && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const char *data = view.buf;
    Py_ssize_t end = view.len;
    PyObject *result = NULL;
    PyObject *headers = NULL;
    Py_ssize_t method_len = 0, target = 0, target_len = 0;
    int status = 0;
    long long body_len = 0;

    Py_ssize_t p = request ? request_line(data, end, &method_len, &target, &target_len)
                           : status_line(data, end, &status);
    if (p == DECLINE) {
        goto decline;
    }
    headers = PyList_New(0);
    if (headers == NULL) {
        goto done;
    }
    p = headers_and_body(data, p, end, request, max_headers, headers, &body_len);
    if (p == FAILED) {
        goto done;
    }
    if (p == DECLINE || (request ? p > limit : body_len > limit)) {
        goto decline;
    }
    if (request) {
        result = Py_BuildValue("(y#y#Oy#)", data, method_len, data + target, target_len,
                               headers, data + p, (Py_ssize_t)body_len);
    }
    else {
        result = Py_BuildValue("(iOy#)", status, headers, data + p, (Py_ssize_t)body_len);
    }
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(headers);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *
parse_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    return parse(args, nargs, 1);
}

static PyObject *
parse_response(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    return parse(args, nargs, 0);
}

/* ------------------------------------------------------------------------------------------
 * Headers passed on: wire.py's forwarded_py and whole_py, in one pass each.
 */

#define MAX_TOKENS 32

typedef struct {
    const char *p;
    Py_ssize_t n;
} Span;

static int
is_space(char c)
{
    /* bytes.strip()'s whitespace */
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c';
}

/* The 2-tuple of bytes at `item`, else 0 (the caller falls back to Python). */
static int
pair_of(PyObject *item, PyObject **name, PyObject **value)
{
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) {
        return 0;
    }
    *name = PyTuple_GET_ITEM(item, 0);
    *value = PyTuple_GET_ITEM(item, 1);
    return PyBytes_CheckExact(*name) && PyBytes_CheckExact(*value);
}

static int
span_is(Span a, const char *p, Py_ssize_t n)
{
    return a.n == n && memcmp(a.p, p, (size_t)n) == 0;
}

/* Whether the header called `name` is kept: 1, 0, or -1 with an error set. */
static int
kept(PyObject *name, PyObject *drop, int internal, Span *tokens, int ntokens, char *lower)
{
    Py_ssize_t n = PyBytes_GET_SIZE(name);
    const char *s = PyBytes_AS_STRING(name);
    int upper = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        lower[i] = ascii_lower(s[i]);
        upper |= lower[i] != s[i];
    }
    int dropped;
    if (upper) {
        PyObject *lowered = PyBytes_FromStringAndSize(lower, n);
        if (lowered == NULL) {
            return -1;
        }
        dropped = PySet_Contains(drop, lowered);
        Py_DECREF(lowered);
    }
    else {
        dropped = PySet_Contains(drop, name);
    }
    if (dropped != 0) {
        return dropped < 0 ? -1 : 0;
    }
    if (internal && n >= 7 && memcmp(lower, "x-kato-", 7) == 0) {
        return 0;
    }
    for (int t = 0; t < ntokens; t++) {
        if (span_is(tokens[t], lower, n)) {
            return 0;
        }
    }
    return 1;
}

/* The kept headers of `seq` (a list or tuple of 2-tuples of bytes), as a list of the same
 * pairs; Py_None when an item is not such a pair (the caller falls back to Python).
 */
static PyObject *
kept_pairs(PyObject *seq, PyObject *drop, int internal)
{
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    Span tokens[MAX_TOKENS];
    int ntokens = 0;
    char *lowered_tokens = NULL;
    Py_ssize_t longest = 0;
    PyObject *result = NULL;
    char *lower = NULL;

    /* Every header named in Connection goes too (tokens lower-cased, as Python compares). */
    Py_ssize_t token_bytes = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name, *value;
        if (!pair_of(items[i], &name, &value)) {
            return Py_NewRef(Py_None);
        }
        if (PyBytes_GET_SIZE(name) > longest) {
            longest = PyBytes_GET_SIZE(name);
        }
        if (ieq(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), "connection")) {
            token_bytes += PyBytes_GET_SIZE(value);
        }
    }
    if (token_bytes > 0) {
        lowered_tokens = PyMem_Malloc((size_t)token_bytes);
        if (lowered_tokens == NULL) {
            return PyErr_NoMemory();
        }
        char *out = lowered_tokens;
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *name = PyTuple_GET_ITEM(items[i], 0);
            if (!ieq(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name), "connection")) {
                continue;
            }
            PyObject *value = PyTuple_GET_ITEM(items[i], 1);
            const char *v = PyBytes_AS_STRING(value);
            Py_ssize_t vn = PyBytes_GET_SIZE(value);
            Py_ssize_t start = 0;
            for (Py_ssize_t j = 0; j <= vn; j++) {
                if (j < vn && v[j] != ',') {
                    continue;
                }
                Py_ssize_t a = start, b = j;
                while (a < b && is_space(v[a])) {
                    a++;
                }
                while (b > a && is_space(v[b - 1])) {
                    b--;
                }
                if (ntokens == MAX_TOKENS) {
                    PyMem_Free(lowered_tokens);
                    return Py_NewRef(Py_None); /* unusual: Python copes */
                }
                for (Py_ssize_t k = a; k < b; k++) {
                    out[k - a] = ascii_lower(v[k]);
                }
                tokens[ntokens].p = out;
                tokens[ntokens].n = b - a;
                ntokens++;
                out += b - a;
                start = j + 1;
            }
        }
    }
    lower = PyMem_Malloc((size_t)longest + 1);
    result = PyList_New(0);
    if (lower == NULL || result == NULL) {
        Py_CLEAR(result);
        if (lower == NULL) {
            PyErr_NoMemory();
        }
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        int keep = kept(PyTuple_GET_ITEM(items[i], 0), drop, internal, tokens, ntokens, lower);
        if (keep < 0 || (keep && PyList_Append(result, items[i]) < 0)) {
            Py_CLEAR(result);
            goto done;
        }
    }
done:
    PyMem_Free(lower);
    PyMem_Free(lowered_tokens);
    return result;
}

static PyObject *
forwarded(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3 || !PyAnySet_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "forwarded(headers, drop: set, internal: bool)");
        return NULL;
    }
    int internal = PyObject_IsTrue(args[2]);
    if (internal < 0) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[0], "headers must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    PyObject *result = kept_pairs(seq, args[1], internal);
    Py_DECREF(seq);
    return result;
}

/* Append "name: value\r\n" (the name lower-cased when `lower`) at `*out`. */
static void
put_line(char **out, PyObject *name, PyObject *value, int lower)
{
    char *o = *out;
    Py_ssize_t n = PyBytes_GET_SIZE(name);
    const char *s = PyBytes_AS_STRING(name);
    for (Py_ssize_t i = 0; i < n; i++) {
        o[i] = lower ? ascii_lower(s[i]) : s[i];
    }
    o += n;
    *o++ = ':';
    *o++ = ' ';
    memcpy(o, PyBytes_AS_STRING(value), (size_t)PyBytes_GET_SIZE(value));
    o += PyBytes_GET_SIZE(value);
    *o++ = '\r';
    *o++ = '\n';
    *out = o;
}

static PyObject *
header_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    /* The headers as b"name: value\r\n" lines, joined; None for items that are not pairs. */
    (void)module;
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "header_lines(headers)");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[0], "headers must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    Py_ssize_t size = 0;
    PyObject *name = NULL, *value = NULL, *result = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!pair_of(items[i], &name, &value)) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        size += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4;
    }
    result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) {
        goto done;
    }
    char *out = PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < count; i++) {
        pair_of(items[i], &name, &value);
        put_line(&out, name, value, 0);
    }
done:
    Py_DECREF(seq);
    return result;
}

/* The i-th header of an answer (defaults first): 1 to write (`*lower`: its name lower-cased),
 * 0 to leave out (a header's own Content-Length: the body's is written), -1 not a pair.
 */
static int
answer_pair(PyObject **d, Py_ssize_t nd, PyObject **h, Py_ssize_t i, PyObject **name,
            PyObject **value, int *lower)
{
    *lower = i >= nd;
    if (!pair_of(*lower ? h[i - nd] : d[i], name, value)) {
        return -1;
    }
    return !(*lower && ieq(PyBytes_AS_STRING(*name), PyBytes_GET_SIZE(*name), "content-length"));
}

static PyObject *
whole(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    /* whole(status_line, default_headers, headers, body, keep_alive): wire.whole_py's bytes. */
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "whole(status_line, defaults, headers, body, keep_alive)");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[0]) || !PyBytes_CheckExact(args[3])) {
        return Py_NewRef(Py_None); /* a bytes-like body, say: Python copes */
    }
    int keep_alive = PyObject_IsTrue(args[4]);
    if (keep_alive < 0) {
        return NULL;
    }
    PyObject *defaults = PySequence_Fast(args[1], "default headers must be a sequence");
    if (defaults == NULL) {
        return NULL;
    }
    PyObject *headers = PySequence_Fast(args[2], "headers must be a sequence");
    if (headers == NULL) {
        Py_DECREF(defaults);
        return NULL;
    }
    PyObject *result = NULL, *name = NULL, *value = NULL;
    Py_ssize_t nd = PySequence_Fast_GET_SIZE(defaults), nh = PySequence_Fast_GET_SIZE(headers);
    PyObject **d = PySequence_Fast_ITEMS(defaults), **h = PySequence_Fast_ITEMS(headers);
    Py_ssize_t body_len = PyBytes_GET_SIZE(args[3]);
    char length[32];
    int length_len = snprintf(length, sizeof length, "content-length: %zd\r\n", body_len);
    static const char close_line[] = "connection: close\r\n";
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]) + length_len + 2 + body_len;
    if (!keep_alive) {
        size += (Py_ssize_t)sizeof close_line - 1;
    }
    int lower;
    for (Py_ssize_t i = 0; i < nd + nh; i++) {
        int write = answer_pair(d, nd, h, i, &name, &value, &lower);
        if (write < 0) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        size += write ? PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4 : 0;
    }
    result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) {
        goto done;
    }
    char *out = PyBytes_AS_STRING(result);
    memcpy(out, PyBytes_AS_STRING(args[0]), (size_t)PyBytes_GET_SIZE(args[0]));
    out += PyBytes_GET_SIZE(args[0]);
    for (Py_ssize_t i = 0; i < nd + nh; i++) {
        if (answer_pair(d, nd, h, i, &name, &value, &lower)) {
            put_line(&out, name, value, lower);
        }
    }
    memcpy(out, length, (size_t)length_len);
    out += length_len;
    if (!keep_alive) {
        memcpy(out, close_line, sizeof close_line - 1);
        out += sizeof close_line - 1;
    }
    *out++ = '\r';
    *out++ = '\n';
    memcpy(out, PyBytes_AS_STRING(args[3]), (size_t)body_len);
done:
    Py_DECREF(defaults);
    Py_DECREF(headers);
    return result;
}

static PyMethodDef methods[] = {
    {"parse_request", (PyCFunction)(void (*)(void))parse_request, METH_FASTCALL,
     "(method, target, headers, body) of one whole plain request, else None."},
    {"parse_response", (PyCFunction)(void (*)(void))parse_response, METH_FASTCALL,
     "(status, headers, body) of one whole plain response, else None."},
    {"forwarded", (PyCFunction)(void (*)(void))forwarded, METH_FASTCALL,
     "The end-to-end headers of a list of (name, value) (see wire.forwarded_py)."},
    {"header_lines", (PyCFunction)(void (*)(void))header_lines, METH_FASTCALL,
     "(name, value) pairs as header lines."},
    {"whole", (PyCFunction)(void (*)(void))whole, METH_FASTCALL,
     "A whole answer's bytes (see wire.whole_py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_wire", "The proxy's wire work (see wire.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__wire(void)
{
    init_tables();
    return PyModule_Create(&module_def);
}
