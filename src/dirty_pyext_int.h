/*
 * dirty_pyext_int.h — what the three files of the extension module
 * _cunicorn_dirty share; included by them only:
 *
 *   dirty_pycodec.c  Python values <-> dirty wire values and frames (the
 *                    C API of dirty_pyext.h, also used by the dirty
 *                    worker), the two exception classes
 *   dirty_pyconn.c   Connection, the fast blocking client transport
 *   dirty_pyreader.c FrameReader, the frame reassembler for the asyncio
 *                    client (its loop reads, data_received feeds)
 *   dirty_pyext.c    the module: its functions, constants and PyInit
 *
 * Every function here must be called with the GIL held; errors are
 * reported as in dirty_pyext.h (-1 / NULL with a Python exception set).
 */
#ifndef CUNICORN_DIRTY_PYEXT_INT_H
#define CUNICORN_DIRTY_PYEXT_INT_H

#include "dirty_pyext.h"

/* Names private to the extension: never in the binary's dynamic symbol
 * table (it is linked --export-dynamic for extension modules). */
#pragma GCC visibility push(hidden)

/* Create ProtocolError and RemoteError once; 0, or -1. */
int	 dirty_py_exceptions_init(void);
/* Raise ProtocolError(why) (a generic text when why is NULL). */
void	 dirty_py_raise_protocol(const char *why);
/* The value of key in a payload that must be a Dict, decoded (a new
 * reference); the rest validated; ProtocolError also when absent. */
PyObject *dirty_py_decode_field(const uint8_t *p, size_t len,
	    const char *key);
/* Append a frame whose payload is {key: value} (value NULL: an empty
 * payload); on failure b is left as it was. */
int	 dirty_py_put_keyed_frame(struct dirty_buf *b, uint8_t type,
	    uint64_t id, const char *key, PyObject *value);
/* "O&" converter: a request id, an int in 0 .. 2**64-1. */
int	 dirty_py_id_converter(PyObject *o, void *addr);
/* 0 if type is a known message type, else -1 with ValueError. */
int	 dirty_py_msg_type_arg(int type);

/* Connection (dirty_pyconn.c). */
extern PyTypeObject dirty_py_connection_type;
/* FrameReader (dirty_pyreader.c). */
extern PyTypeObject dirty_py_frame_reader_type;

#pragma GCC visibility pop

#endif /* CUNICORN_DIRTY_PYEXT_INT_H */
