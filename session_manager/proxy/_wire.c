/* The proxy's wire parser for the common message: one whole, plain HTTP/1.1 request or
 * response in one read, taken apart in one call instead of a Python callback per header.
 *
 * It is a strict subset of what httptools (llhttp) accepts, giving the same parts: whatever it
 * does not recognise exactly (another version, a line ending that is not CRLF, an obs-fold, a
 * byte outside the conservative character sets, Transfer-Encoding, a second Content-Length,
 * Upgrade, Expect, a Connection other than keep-alive, a body not exactly all there, bytes
 * after the message, a head past the limits) it declines with None and the caller feeds the
 * bytes to httptools as always. So it can only make the common case cheaper, never accept what
 * the edge would refuse. session_manager/proxy/wire.py documents the contract; the property
 * test (tests/unit/session_manager/test_wire.py) holds it against httptools.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

/* RFC 9110 tchar. */
static unsigned char TCHAR[256];
/* field-value bytes: VCHAR, SP, HTAB (obs-text declined). */
static unsigned char FIELD[256];
/* request-target bytes: unreserved, sub-delims, ":@/?%" (nothing to quote or escape). */
static unsigned char TARGET[256];
/* reason-phrase bytes: as FIELD. */

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

static int
ieq(const char *p, Py_ssize_t n, const char *lower)
{
    /* p[0:n] equals the lower-case ASCII `lower`, ignoring case. */
    if ((Py_ssize_t)strlen(lower) != n) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z') {
            c = (char)(c - 'A' + 'a');
        }
        if (c != lower[i]) {
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
                if (s[i] >= 'A' && s[i] <= 'Z') {
                    s[i] = (char)(s[i] - 'A' + 'a');
                }
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

static PyObject *
parse_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Py_buffer view;
    Py_ssize_t max_headers, max_head_bytes;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "parse_request(data, max_headers, max_head_bytes)");
        return NULL;
    }
    max_headers = PyLong_AsSsize_t(args[1]);
    max_head_bytes = PyLong_AsSsize_t(args[2]);
    if ((max_headers == -1 || max_head_bytes == -1) && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const char *data = view.buf;
    Py_ssize_t end = view.len;
    PyObject *result = NULL;
    PyObject *headers = NULL;

    Py_ssize_t p = 0;
    Py_ssize_t method_len;
    if (end >= 4 && memcmp(data, "GET ", 4) == 0) {
        method_len = 3;
    }
    else if (end >= 5 && memcmp(data, "POST ", 5) == 0) {
        method_len = 4;
    }
    else {
        goto decline;
    }
    p = method_len + 1;
    Py_ssize_t target = p;
    if (p >= end || data[p] != '/') {
        goto decline;
    }
    while (p < end && TARGET[(unsigned char)data[p]]) {
        p++;
    }
    Py_ssize_t target_len = p - target;
    if (end - p < 11 || memcmp(data + p, " HTTP/1.1\r\n", 11) != 0) {
        goto decline;
    }
    p += 11;
    headers = PyList_New(0);
    if (headers == NULL) {
        goto done;
    }
    long long body_len;
    p = parse_headers(data, p, end, 1, max_headers, headers, &body_len);
    if (p == FAILED) {
        goto done;
    }
    if (p == DECLINE || p > max_head_bytes) {
        goto decline;
    }
    if (body_len < 0) {
        body_len = 0;
    }
    if ((long long)(end - p) != body_len) {
        goto decline;
    }
    result = Py_BuildValue("(y#y#Oy#)", data, method_len, data + target, target_len, headers,
                           data + p, (Py_ssize_t)body_len);
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(headers);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *
parse_response(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Py_buffer view;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "parse_response(data, max_headers, max_body)");
        return NULL;
    }
    Py_ssize_t max_headers = PyLong_AsSsize_t(args[1]);
    Py_ssize_t max_body = PyLong_AsSsize_t(args[2]);
    if ((max_headers == -1 || max_body == -1) && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const char *data = view.buf;
    Py_ssize_t end = view.len;
    PyObject *result = NULL;
    PyObject *headers = NULL;

    if (end < 13 || memcmp(data, "HTTP/1.1 ", 9) != 0) {
        goto decline;
    }
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (data[i] < '0' || data[i] > '9') {
            goto decline;
        }
        status = status * 10 + (data[i] - '0');
    }
    /* No body by definition (1xx, 204, 304), or not a status at all: httptools' business. */
    if (status < 200 || status > 599 || status == 204 || status == 304 || data[12] != ' ') {
        goto decline;
    }
    Py_ssize_t p = 13;
    while (p < end && FIELD[(unsigned char)data[p]]) {
        p++;
    }
    if (p + 1 >= end || data[p] != '\r' || data[p + 1] != '\n') {
        goto decline;
    }
    p += 2;
    headers = PyList_New(0);
    if (headers == NULL) {
        goto done;
    }
    long long body_len;
    p = parse_headers(data, p, end, 0, max_headers, headers, &body_len);
    if (p == FAILED) {
        goto done;
    }
    if (p == DECLINE || body_len < 0 || body_len > max_body || (long long)(end - p) != body_len) {
        goto decline;
    }
    result = Py_BuildValue("(iOy#)", status, headers, data + p, (Py_ssize_t)body_len);
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(headers);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"parse_request", (PyCFunction)(void (*)(void))parse_request, METH_FASTCALL,
     "(method, target, headers, body) of one whole plain request, else None."},
    {"parse_response", (PyCFunction)(void (*)(void))parse_response, METH_FASTCALL,
     "(status, headers, body) of one whole plain response, else None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_wire", "The proxy's wire parser (see wire.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__wire(void)
{
    init_tables();
    return PyModule_Create(&module_def);
}
