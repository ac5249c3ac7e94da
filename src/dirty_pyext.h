/*
 * dirty_pyext.h — the dirty protocol seen from Python: the extension
 * module _cunicorn_dirty (dirty_pyext.c, its Connection in dirty_pyconn.c)
 * and the C API (dirty_pycodec.c) the dirty worker (dirty_serve.c) uses
 * to turn wire values into Python objects and back.
 *
 * Include after nothing else that includes Python.h differently: this
 * header pulls in <Python.h> with PY_SSIZE_T_CLEAN.
 *
 * Every function here must be called with the GIL held.  Functions that
 * return int give 0 on success and -1 with a Python exception set on
 * failure; functions returning PyObject * give a new reference or NULL
 * with an exception set.  Decoding errors raise _cunicorn_dirty.
 * ProtocolError (a ValueError); unsupported types raise TypeError; values
 * out of range raise OverflowError / ValueError.
 *
 * The frame builders APPEND one complete frame (header + payload) to a
 * dirty_buf; on failure they leave the buffer exactly as it was, so a
 * caller can then append an error frame instead.
 *
 * Python API of the module _cunicorn_dirty:
 *   encode(obj) -> bytes                 one TLV value
 *   decode(buf) -> obj                   exactly one value (ProtocolError)
 *   encode_frame(type, id, payload|None) -> bytes   None: empty payload
 *   encode_request(id, app_path, action, args=None, kwargs=None) -> bytes
 *   encode_response(id, result) / encode_chunk(id, data) / encode_end(id)
 *   encode_error(id, error_type, message, details=None) -> bytes
 *   parse_request(payload) -> (app_path, action, args_tuple, kwargs)
 *   decode_header(buf16) -> (type, length, id)      first 16 bytes
 *   decode_frame(buf) -> (type, id, payload|None)   exactly one frame
 *   MSG_TYPE_{REQUEST,RESPONSE,ERROR,CHUNK,END,STASH,STATUS,MANAGE},
 *   STASH_OP_*, MANAGE_OP_{ADD,REMOVE}, HEADER_SIZE, MAX_PAYLOAD,
 *   MAX_BLOB, MAX_COUNT, MAX_DEPTH
 *   ProtocolError(ValueError); RemoteError(Exception) with args and
 *   attributes (error_type: str, message: str, details: dict)
 *   Connection(path, timeout=None)       blocking Unix-socket client; one
 *     call at a time (RuntimeError if another thread is inside); timeout
 *     in seconds per call (attribute, settable; None: wait forever)
 *     .request(app_path, action, args=(), kwargs=None) -> result
 *         RemoteError for an ERROR reply (connection stays usable)
 *     .stream_start(app_path, action, args=(), kwargs=None) -> id
 *     .stream_next(id) -> (MSG_TYPE_CHUNK, data) | (MSG_TYPE_END, None)
 *         | (MSG_TYPE_RESPONSE, result); RemoteError for an ERROR
 *     .send_raw(type, payload|None) -> id
 *     .recv_reply(id) -> (type, payload|None)   raw: never RemoteError
 *     .close(), .fileno(), .closed, .path, context manager
 *   Frames for other ids are dropped while waiting (late replies to timed
 *   out calls).  TimeoutError on timeout (connection kept, unless a send
 *   was cut); ConnectionError (or its errno subclass) on EOF / reset, and
 *   ProtocolError on a malformed frame: the connection is closed then.
 */
#ifndef CUNICORN_DIRTY_PYEXT_H
#define CUNICORN_DIRTY_PYEXT_H

#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

#include "dirty_wire.h"

/* Called (when set; GIL not held) right before a client blocks for a
 * reply that did not come within a short grace period (waiting 1), and
 * once the wait is over (0): the gthread worker lets another of its
 * threads run the requests queued meanwhile.  Must not call Python. */
extern void (*dirty_client_wait_hook)(int waiting);

/* Module init: python.c registers it with
 * PyImport_AppendInittab("_cunicorn_dirty", PyInit__cunicorn_dirty). */
PyObject *PyInit__cunicorn_dirty(void);

/* Decode the one value at the cursor into a new Python object (None,
 * bool, int, float, bytes, str, list, dict).  Does not check for trailing
 * bytes (call dirty_end()).  On malformed input raises ProtocolError with
 * the cursor's reason. */
PyObject *dirty_py_decode(struct dirty_cursor *c);

/* Decode a whole payload: exactly one value, trailing bytes refused, an
 * empty payload refused. */
PyObject *dirty_py_decode_payload(const uint8_t *p, size_t len);

/* Append one value (None, bool, int in int64 range, float, bytes /
 * bytearray / contiguous memoryview, str, list / tuple, dict with str
 * keys; subclasses accepted) at the top level of a payload.  Nesting
 * deeper than DIRTY_MAX_DEPTH containers, a blob over DIRTY_MAX_BLOB, a
 * container over DIRTY_MAX_COUNT or a value over DIRTY_MAX_PAYLOAD
 * bytes raise ValueError.  On failure b is left as it was. */
int dirty_py_encode(struct dirty_buf *b, PyObject *o);

/* REQUEST {"app_path", "action", "args", "kwargs"} (in that order).
 * app_path and action: str.  args: list or tuple (NULL/None: []).
 * kwargs: dict (NULL/None: {}). */
int dirty_py_put_request(struct dirty_buf *b, uint64_t id,
    PyObject *app_path, PyObject *action, PyObject *args, PyObject *kwargs);
/* RESPONSE {"result": result} */
int dirty_py_put_response(struct dirty_buf *b, uint64_t id,
    PyObject *result);
/* CHUNK {"data": data} */
int dirty_py_put_chunk(struct dirty_buf *b, uint64_t id, PyObject *data);
/* END (empty payload); cannot fail. */
void dirty_py_put_end(struct dirty_buf *b, uint64_t id);
/* ERROR {"error": {"error_type", "message", "details"}}.  error_type and
 * message are UTF-8 C strings (invalid UTF-8 is replaced by U+FFFD-safe
 * text); details is a dict (for DirtyAppError: {"traceback": str}) or
 * NULL / None for {}.  Details that cannot be encoded are sent as {}.
 * Never fails: always returns 0 with no exception set. */
int dirty_py_put_error(struct dirty_buf *b, uint64_t id,
    const char *error_type, const char *message, PyObject *details);

/* Parse a REQUEST payload into new references: app_path (str), action
 * (str), args (tuple), kwargs (dict).  Raises ProtocolError when the
 * payload is malformed or a field is missing or of the wrong type; on
 * failure the four pointers are left NULL. */
int dirty_py_parse_request(const uint8_t *p, size_t len,
    PyObject **app_path, PyObject **action, PyObject **args,
    PyObject **kwargs);

/* The exception classes (borrowed references; created on first use, the
 * same objects the module exports). */
PyObject *dirty_py_protocol_error(void);
PyObject *dirty_py_remote_error(void);

#endif
