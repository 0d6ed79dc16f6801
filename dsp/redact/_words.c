/* ASR word lists to flat columns: the per-word reads of dsp.redact.tokens in C.
 *
 * A batch is a list of transcripts, each a list or tuple of words, each word a
 * tuple (text, start, end[, segment]) or any other sequence. Turning it into
 * arrays needs one read per word (its text, its id in the vocabulary, its times),
 * which is most of what redaction costs when done with Python's iterators. These
 * two functions do the reads and write the arrays through the buffer protocol (no
 * NumPy headers: the package builds without NumPy installed). dsp/redact/words.py
 * holds the same functions in Python, the reference these are tested against.
 *
 *   texts_and_ids(word_lists, table, ids) -> list of texts
 *   gather(word_lists, offsets, doc, tokens, item, out) -> None
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* A buffer of one of the one-character ``formats`` (native order) and item size ``size``:
 * the size decides, the format only tells integers from floats ("l" is int32 where long
 * is 32 bits, int64 where it is 64). */
static int get_buffer(PyObject *object, Py_buffer *view, int writable, const char *formats,
                      Py_ssize_t size, const char *what)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object, view, flags) < 0)
        return -1;
    const char *format = view->format ? view->format : "B";
    if (format[0] == '@' || format[0] == '=')
        format++;
    if (view->itemsize != size || format[0] == '\0' || format[1] != '\0' ||
        strchr(formats, format[0]) == NULL) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of format '%s' and size %zd, got '%s'",
                     what, formats, size, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Item ``index`` of a word (new reference): a tuple's directly, else by the sequence protocol. */
static PyObject *word_item(PyObject *word, Py_ssize_t index)
{
    if (PyTuple_Check(word)) {
        if (index >= PyTuple_GET_SIZE(word)) {
            PyErr_Format(PyExc_IndexError, "a word has %zd fields, item %zd asked for",
                         PyTuple_GET_SIZE(word), index);
            return NULL;
        }
        PyObject *item = PyTuple_GET_ITEM(word, index);
        Py_INCREF(item);
        return item;
    }
    return PySequence_GetItem(word, index);
}

/* Word ``place`` of a transcript (new reference). */
static PyObject *transcript_word(PyObject *words, Py_ssize_t place)
{
    if (PyList_CheckExact(words) || PyTuple_CheckExact(words)) {
        PyObject *fast = words;
        if (place < 0 || place >= PySequence_Fast_GET_SIZE(fast)) {
            PyErr_SetString(PyExc_IndexError, "a transcript is shorter than its batch says");
            return NULL;
        }
        PyObject *word = PySequence_Fast_GET_ITEM(fast, place);
        Py_INCREF(word);
        return word;
    }
    return PySequence_GetItem(words, place);
}

PyDoc_STRVAR(texts_and_ids_doc,
"texts_and_ids(word_lists, table, ids) -> list\n\n"
"Every word's text, in order, as one list; ``ids[i]`` set to ``table[text]`` for the\n"
"i-th word, or -1 where ``table`` lacks it. ``word_lists`` is a list of sequences of\n"
"words; ``ids`` a writable int32 buffer of exactly one item per word.");

static PyObject *texts_and_ids(PyObject *module, PyObject *args)
{
    PyObject *word_lists, *table, *ids_object;
    if (!PyArg_ParseTuple(args, "O!O!O:texts_and_ids", &PyList_Type, &word_lists, &PyDict_Type,
                          &table, &ids_object))
        return NULL;
    Py_buffer ids_view;
    if (get_buffer(ids_object, &ids_view, 1, "il", 4, "ids") < 0)
        return NULL;
    int32_t *ids = ids_view.buf;
    Py_ssize_t total = ids_view.len / 4, at = 0;
    PyObject *texts = PyList_New(total);
    if (texts == NULL)
        goto fail;
    /* Out of the collector's sight until every slot is set: Python code runs in between
     * (a word's __getitem__, a text's __eq__), and gc.get_referrers() would hand it a
     * list with empty slots. */
    PyObject_GC_UnTrack(texts);
    for (Py_ssize_t doc = 0; doc < PyList_GET_SIZE(word_lists); doc++) {
        PyObject *words = PySequence_Fast(PyList_GET_ITEM(word_lists, doc),
                                          "a transcript must be a sequence of words");
        if (words == NULL)
            goto fail;
        /* size and items read again for each word: a word that is not a tuple, or a
         * text that is not an exact str, runs Python code that could change the list */
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(words); i++, at++) {
            if (at == total) {
                Py_DECREF(words);
                PyErr_SetString(PyExc_ValueError, "more words than ids");
                goto fail;
            }
            PyObject *word = PySequence_Fast_GET_ITEM(words, i);
            Py_INCREF(word);
            PyObject *text = word_item(word, 0);
            Py_DECREF(word);
            if (text == NULL) {
                Py_DECREF(words);
                goto fail;
            }
            PyList_SET_ITEM(texts, at, text); /* the list owns it now */
            PyObject *found = PyDict_GetItemWithError(table, text);
            long id = -1;
            if (found != NULL) {
                id = PyLong_AsLong(found);
                if (id == -1 && PyErr_Occurred()) {
                    Py_DECREF(words);
                    goto fail;
                }
                if (id < INT32_MIN || id > INT32_MAX) {
                    Py_DECREF(words);
                    PyErr_Format(PyExc_OverflowError, "id %ld does not fit in int32", id);
                    goto fail;
                }
            } else if (PyErr_Occurred()) {
                Py_DECREF(words);
                goto fail;
            }
            ids[at] = (int32_t)id;
        }
        Py_DECREF(words);
    }
    if (at != total) {
        PyErr_SetString(PyExc_ValueError, "fewer words than ids");
        goto fail;
    }
    PyObject_GC_Track(texts);
    PyBuffer_Release(&ids_view);
    return texts;

fail:
    /* a list with unset items is still safe to free: PyList_New zeroes them, and its
     * deallocation untracks only what is tracked */
    Py_XDECREF(texts);
    PyBuffer_Release(&ids_view);
    return NULL;
}

PyDoc_STRVAR(gather_doc,
"gather(word_lists, offsets, doc, tokens, item, out) -> None\n\n"
"Field ``item`` of the words at ``tokens`` (int64; None: every word in order) into\n"
"``out``, a writable float64 or int64 buffer of one item per token. Token t is word\n"
"``t - offsets[doc[t]]`` of transcript ``doc[t]`` (offsets int64, doc int32).");

static PyObject *gather(PyObject *module, PyObject *args)
{
    PyObject *word_lists, *offsets_object, *doc_object, *tokens_object, *out_object;
    Py_ssize_t item;
    if (!PyArg_ParseTuple(args, "O!OOOnO:gather", &PyList_Type, &word_lists, &offsets_object,
                          &doc_object, &tokens_object, &item, &out_object))
        return NULL;
    if (item < 0) {
        PyErr_SetString(PyExc_ValueError, "item must be >= 0");
        return NULL;
    }
    Py_buffer offsets_view, doc_view, tokens_view, out_view;
    int have_tokens = tokens_object != Py_None;
    if (get_buffer(offsets_object, &offsets_view, 0, "lq", 8, "offsets") < 0)
        return NULL;
    if (get_buffer(doc_object, &doc_view, 0, "il", 4, "doc") < 0) {
        PyBuffer_Release(&offsets_view);
        return NULL;
    }
    if (have_tokens && get_buffer(tokens_object, &tokens_view, 0, "lq", 8, "tokens") < 0) {
        PyBuffer_Release(&doc_view);
        PyBuffer_Release(&offsets_view);
        return NULL;
    }
    if (get_buffer(out_object, &out_view, 1, "dlq", 8, "out") < 0) {
        if (have_tokens)
            PyBuffer_Release(&tokens_view);
        PyBuffer_Release(&doc_view);
        PyBuffer_Release(&offsets_view);
        return NULL;
    }
    const int64_t *offsets = offsets_view.buf, *tokens = have_tokens ? tokens_view.buf : NULL;
    const int32_t *doc = doc_view.buf;
    Py_ssize_t documents = offsets_view.len / 8 - 1, size = doc_view.len / 4;
    Py_ssize_t count = out_view.len / 8;
    const char *format = out_view.format[0] == '@' || out_view.format[0] == '=' ?
                         out_view.format + 1 : out_view.format;
    int as_float = format[0] == 'd';
    PyObject *result = NULL;

    if (documents != PyList_GET_SIZE(word_lists)) {
        PyErr_SetString(PyExc_ValueError, "offsets do not match the word lists");
        goto done;
    }
    if ((have_tokens ? tokens_view.len / 8 : size) != count) {
        PyErr_SetString(PyExc_ValueError, "out must hold one item per token");
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        int64_t token = have_tokens ? tokens[i] : i;
        if (token < 0 || token >= size) {
            PyErr_Format(PyExc_IndexError, "token %lld outside the batch", (long long)token);
            goto done;
        }
        int32_t transcript = doc[token];
        if (transcript < 0 || transcript >= documents ||
            transcript >= PyList_GET_SIZE(word_lists)) {
            PyErr_SetString(PyExc_IndexError, "a token's transcript is outside the batch");
            goto done;
        }
        int64_t first = offsets[transcript];
        if (first < 0 || first > token) {
            PyErr_SetString(PyExc_IndexError, "a token is outside its transcript");
            goto done;
        }
        PyObject *words = PyList_GET_ITEM(word_lists, transcript);
        Py_INCREF(words);
        PyObject *word = transcript_word(words, (Py_ssize_t)(token - first));
        Py_DECREF(words);
        if (word == NULL)
            goto done;
        PyObject *value = word_item(word, item);
        Py_DECREF(word);
        if (value == NULL)
            goto done;
        if (as_float) {
            double number = PyFloat_CheckExact(value) ? PyFloat_AS_DOUBLE(value)
                                                      : PyFloat_AsDouble(value);
            Py_DECREF(value);
            if (number == -1.0 && PyErr_Occurred())
                goto done;
            ((double *)out_view.buf)[i] = number;
        } else {
            long long number = PyLong_AsLongLong(value);
            Py_DECREF(value);
            if (number == -1 && PyErr_Occurred())
                goto done;
            ((int64_t *)out_view.buf)[i] = (int64_t)number;
        }
    }
    result = Py_NewRef(Py_None);

done:
    PyBuffer_Release(&out_view);
    if (have_tokens)
        PyBuffer_Release(&tokens_view);
    PyBuffer_Release(&doc_view);
    PyBuffer_Release(&offsets_view);
    return result;
}

static PyMethodDef methods[] = {
    {"texts_and_ids", texts_and_ids, METH_VARARGS, texts_and_ids_doc},
    {"gather", gather, METH_VARARGS, gather_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dsp.redact._words",
    .m_doc = "ASR word lists to flat columns (see dsp/redact/words.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__words(void)
{
    return PyModule_Create(&module_definition);
}
