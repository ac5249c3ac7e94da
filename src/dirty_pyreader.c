/*
 * dirty_pyreader.c — _cunicorn_dirty.FrameReader: the codec's one frame
 * reassembler (dirty_reader, dirty_wire.c) for a Python caller that gets
 * its bytes from somewhere else — the asyncio dirty client, whose event
 * loop reads the socket and hands each read to a protocol's
 * data_received().
 *
 *     r = FrameReader()
 *     for kind, request_id, message in r.feed(data): ...
 *
 * feed() returns the frames that the bytes complete, each decoded
 * (message None for an empty payload) and keeps a partial frame for the
 * next call.  A header that is not valid raises ProtocolError; the reader
 * then refuses every later feed (the stream cannot be trusted: its owner
 * closes the connection).  A payload that does not decode raises too,
 * after the frames before it were consumed and lost with the exception:
 * the same ending, the connection is done.  Bounded as dirty_reader is:
 * nothing is reserved for a frame before its header is valid.
 *
 * Owns: its reader.  Never does I/O; called with the GIL held, by one
 * thread at a time (the loop's).
 */
#include "dirty_pyext_int.h"

#include "dirty_wire.h"

#define FRAME_READER_KEEP	(64 * 1024)	/* buffer kept between frames */

typedef struct {
	PyObject_HEAD
	struct dirty_reader rd;
	int broken;		/* a bad header was seen: refuse more */
} FrameReaderObject;

static PyObject *
FrameReader_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	FrameReaderObject *self;

	if (!_PyArg_NoPositional("FrameReader", args) ||
	    !_PyArg_NoKeywords("FrameReader", kwds))
		return NULL;
	if ((self = (FrameReaderObject *)type->tp_alloc(type, 0)) == NULL)
		return NULL;
	dirty_reader_init(&self->rd);
	return (PyObject *)self;
}

static void
FrameReader_dealloc(FrameReaderObject *self)
{
	dirty_reader_free(&self->rd);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The frame as (kind, id, message): a new reference, or NULL. */
static PyObject *
frame_tuple(const struct dirty_header *h, const uint8_t *frame)
{
	PyObject *msg;

	if (h->length == 0) {
		msg = Py_NewRef(Py_None);
	} else if ((msg = dirty_py_decode_payload(frame + DIRTY_HEADER_SIZE,
	    h->length)) == NULL)
		return NULL;
	return Py_BuildValue("(iKN)", (int)h->type, (unsigned long long)h->id,
	    msg);
}

static PyObject *
FrameReader_feed(FrameReaderObject *self, PyObject *arg)
{
	Py_buffer view;
	struct dirty_header h;
	const uint8_t *frame;
	const char *why = NULL;
	PyObject *out, *t;
	int got;

	if (self->broken) {
		dirty_py_raise_protocol("stream already failed");
		return NULL;
	}
	if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) == -1)
		return NULL;
	if ((out = PyList_New(0)) == NULL) {
		PyBuffer_Release(&view);
		return NULL;
	}
	/* borrowed: frames wholly inside this read are decoded in place */
	dirty_reader_feed(&self->rd, view.buf, (size_t)view.len);
	while ((got = dirty_reader_next(&self->rd, &h, &frame, &why)) == 1) {
		if ((t = frame_tuple(&h, frame)) == NULL ||
		    PyList_Append(out, t) == -1) {
			Py_XDECREF(t);
			goto fail;
		}
		Py_DECREF(t);
	}
	if (got == -1) {
		dirty_py_raise_protocol(why);
		goto fail;
	}
	dirty_reader_keep(&self->rd);	/* the partial frame outlives view */
	/* a large frame's room is not kept for the connection's life */
	dirty_reader_trim(&self->rd, FRAME_READER_KEEP);
	PyBuffer_Release(&view);
	return out;
fail:
	self->broken = 1;
	dirty_reader_reset(&self->rd);
	PyBuffer_Release(&view);
	Py_DECREF(out);
	return NULL;
}

static PyObject *
FrameReader_pending(FrameReaderObject *self, void *closure)
{
	size_t len = 0;

	if (!self->broken)
		(void)dirty_reader_peek(&self->rd, &len);
	return PyLong_FromSize_t(len);
}

static PyMethodDef FrameReader_methods[] = {
	{ "feed", (PyCFunction)FrameReader_feed, METH_O,
	  "feed(data) -> [(kind, request_id, message), ...]: the frames the "
	  "bytes complete; a partial frame is kept for the next call" },
	{ NULL, NULL, 0, NULL }
};

static PyGetSetDef FrameReader_getset[] = {
	{ "pending", (getter)FrameReader_pending, NULL,
	  "bytes kept of a frame not complete yet", NULL },
	{ NULL, NULL, NULL, NULL, NULL }
};

PyTypeObject dirty_py_frame_reader_type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "_cunicorn_dirty.FrameReader",
	.tp_doc = "Cuts dirty frames out of a byte stream fed in pieces.",
	.tp_basicsize = sizeof(FrameReaderObject),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_new = FrameReader_new,
	.tp_dealloc = (destructor)FrameReader_dealloc,
	.tp_methods = FrameReader_methods,
	.tp_getset = FrameReader_getset,
};
