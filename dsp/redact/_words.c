/* ASR word lists to flat columns and back: the per-word work of dsp.redact in C.
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
 *   changed_words(replacements, change_bounds, starts, ends, segments, result) -> list
 *   assemble(word_lists, texts, offsets, span_bounds, firsts, lasts, replacements, spans,
 *            changed_at, change_bounds, new_words, skip_empty, result) -> list
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


/* A new instance of the tuple class ``type`` holding ``count`` items, stolen; NULL (an
 * error set) when one of them is NULL or the instance cannot be made, the others
 * released. */
static PyObject *tuple_of(PyTypeObject *type, Py_ssize_t count, PyObject **items)
{
    PyObject *made = NULL;
    for (Py_ssize_t i = 0; i < count; i++)
        if (items[i] == NULL)
            goto fail;
    made = type->tp_alloc(type, count);
    if (made == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < count; i++)
        PyTuple_SET_ITEM(made, i, items[i]);
    return made;
fail:
    for (Py_ssize_t i = 0; i < count; i++)
        Py_XDECREF(items[i]);
    return NULL;
}

PyDoc_STRVAR(changed_words_doc,
"changed_words(replacements, change_bounds, starts, ends, segments, result) -> list\n\n"
"The words that stand for the spans' words: see dsp.redact.words.changed_words, which\n"
"checks the parts first. change_bounds and segments are int64 buffers, starts and\n"
"ends float64; result a tuple class of four items.");

static PyObject *changed_words(PyObject *module, PyObject *args)
{
    PyObject *replacements, *objects[4];
    PyTypeObject *result_type;
    if (!PyArg_ParseTuple(args, "O!OOOOO!:changed_words", &PyList_Type, &replacements,
                          &objects[0], &objects[1], &objects[2], &objects[3], &PyType_Type,
                          &result_type))
        return NULL;
    if (!PyType_IsSubtype(result_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "result must be a tuple class");
        return NULL;
    }
    static const char *names[4] = {"change_bounds", "starts", "ends", "segments"};
    static const char *formats[4] = {"lq", "d", "d", "lq"};
    Py_buffer views[4];
    int held = 0;
    PyObject *words = NULL, *empty = NULL;
    for (; held < 4; held++)
        if (get_buffer(objects[held], &views[held], 0, formats[held], 8, names[held]) < 0)
            goto done;
    const int64_t *bounds = views[0].buf, *segments = views[3].buf;
    const double *starts = views[1].buf, *ends = views[2].buf;
    Py_ssize_t spans = PyList_GET_SIZE(replacements), changes = views[1].len / 8;
    if (views[0].len / 8 != spans + 1 || views[2].len / 8 != changes ||
        views[3].len / 8 != changes || bounds[0] != 0 || bounds[spans] != changes) {
        PyErr_SetString(PyExc_ValueError, "the parts of the changed words do not fit together");
        goto done;
    }
    empty = PyUnicode_FromString("");
    words = empty == NULL ? NULL : PyList_New(changes);
    if (words == NULL)
        goto done;
    PyObject_GC_UnTrack(words); /* not seen by the collector until every slot is set */
    for (Py_ssize_t span = 0; span < spans; span++) {
        if (span >= PyList_GET_SIZE(replacements)) { /* a collection's finalizer ran code */
            PyErr_SetString(PyExc_ValueError, "the replacements list changed");
            goto fail;
        }
        if (bounds[span + 1] <= bounds[span] || bounds[span + 1] > changes) {
            PyErr_SetString(PyExc_ValueError, "change_bounds must rise by 1 or more a span");
            goto fail;
        }
        for (int64_t at = bounds[span]; at < bounds[span + 1]; at++) {
            PyObject *fields[4] = {
                at == bounds[span] ? PyList_GET_ITEM(replacements, span) : empty,
                PyFloat_FromDouble(starts[at]),
                PyFloat_FromDouble(ends[at]),
                PyLong_FromLongLong(segments[at]),
            };
            Py_INCREF(fields[0]);
            PyObject *word = tuple_of(result_type, 4, fields);
            if (word == NULL)
                goto fail;
            PyList_SET_ITEM(words, at, word);
        }
    }
    PyObject_GC_Track(words);
    goto done;

fail:
    Py_CLEAR(words); /* unset slots are NULL, which a list's deallocation skips */
done:
    Py_XDECREF(empty);
    for (int i = 0; i < held; i++)
        PyBuffer_Release(&views[i]);
    return words;
}

PyDoc_STRVAR(assemble_doc,
"assemble(word_lists, texts, offsets, span_bounds, firsts, lasts, replacements, spans,\n"
"         changed_at, change_bounds, new_words, skip_empty, result) -> list\n\n"
"Each transcript's result(text, words, spans): see dsp.redact.words.assemble, which\n"
"checks the parts first. The index arrays are int64 buffers; texts, replacements,\n"
"spans and new_words lists; result a tuple class of three items.");

/* Append ``piece`` to pieces; with skip_empty not when it is false (an empty text), as
 * filter(None, ...) leaves it out. */
static int append_piece(PyObject *pieces, PyObject *piece, int skip_empty)
{
    int result = 0;
    Py_INCREF(piece); /* a piece's __bool__ may run Python code that drops its list's hold */
    if (skip_empty)
        result = PyUnicode_CheckExact(piece) ? PyUnicode_GET_LENGTH(piece) > 0
                                             : PyObject_IsTrue(piece);
    if (!skip_empty || result > 0)
        result = PyList_Append(pieces, piece);
    Py_DECREF(piece);
    return result;
}

/* Append texts[from:to] to pieces, clamped to the list as a slice is. */
static int append_texts(PyObject *pieces, PyObject *texts, Py_ssize_t from, Py_ssize_t to,
                        int skip_empty)
{
    if (from < 0) {
        PyErr_SetString(PyExc_ValueError, "a text's place is negative");
        return -1;
    }
    if (to > PyList_GET_SIZE(texts))
        to = PyList_GET_SIZE(texts);
    /* the size read again each time: a text's __bool__ may run Python code */
    for (Py_ssize_t i = from; i < to && i < PyList_GET_SIZE(texts); i++)
        if (append_piece(pieces, PyList_GET_ITEM(texts, i), skip_empty) < 0)
            return -1;
    return 0;
}

static PyObject *assemble(PyObject *module, PyObject *args)
{
    PyObject *word_lists, *texts, *replacements, *spans, *new_words, *objects[6];
    PyTypeObject *result_type;
    int skip_empty;
    if (!PyArg_ParseTuple(args, "O!O!OOOOO!O!OOO!pO!:assemble", &PyList_Type, &word_lists,
                          &PyList_Type, &texts, &objects[0], &objects[1], &objects[2],
                          &objects[3], &PyList_Type, &replacements, &PyList_Type, &spans,
                          &objects[4], &objects[5], &PyList_Type, &new_words, &skip_empty,
                          &PyType_Type, &result_type))
        return NULL;
    if (!PyType_IsSubtype(result_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "result must be a tuple class");
        return NULL;
    }
    static const char *names[6] = {"offsets", "span_bounds", "firsts", "lasts", "changed_at",
                                   "change_bounds"};
    Py_buffer views[6];
    int held = 0;
    PyObject *results = NULL, *space = NULL;
    for (; held < 6; held++)
        if (get_buffer(objects[held], &views[held], 0, "lq", 8, names[held]) < 0)
            goto done;
    const int64_t *offsets = views[0].buf, *span_bounds = views[1].buf;
    const int64_t *firsts = views[2].buf, *lasts = views[3].buf;
    const int64_t *changed_at = views[4].buf, *change_bounds = views[5].buf;
    Py_ssize_t documents = PyList_GET_SIZE(word_lists);
    Py_ssize_t span_count = PyList_GET_SIZE(spans), changes = PyList_GET_SIZE(new_words);
    /* the sizes and bounds Python checked, again: nothing below reads outside an array */
    if (views[0].len / 8 != documents + 1 || views[1].len / 8 != documents + 1 ||
        views[2].len / 8 != span_count || views[3].len / 8 != span_count ||
        PyList_GET_SIZE(replacements) != span_count || views[4].len / 8 != changes ||
        views[5].len / 8 != span_count + 1) {
        PyErr_SetString(PyExc_ValueError, "the parts of an assembly do not fit together");
        goto done;
    }
    space = PyUnicode_FromString(" ");
    results = space == NULL ? NULL : PyList_New(0);
    if (results == NULL)
        goto done;
    /* the lists' sizes are read again where they are indexed: Python code may run in
     * between (a word list's __iter__, a text's __bool__) and change them */
    for (Py_ssize_t doc = 0; doc < documents && doc < PyList_GET_SIZE(word_lists); doc++) {
        int64_t begin = offsets[doc], finish = offsets[doc + 1];
        int64_t low = span_bounds[doc], high = span_bounds[doc + 1];
        if (begin < 0 || finish < begin || low < 0 || high < low || high > span_count ||
            change_bounds[low] < 0 || change_bounds[high] < change_bounds[low] ||
            change_bounds[high] > changes) {
            PyErr_SetString(PyExc_ValueError, "the bounds of an assembly do not rise");
            goto fail;
        }
        PyObject *words = PyList_GET_ITEM(word_lists, doc);
        Py_INCREF(words);
        PyObject *doc_words = PySequence_List(words);
        Py_DECREF(words);
        if (doc_words == NULL)
            goto fail;
        if (PyList_GET_SIZE(doc_words) != finish - begin) {
            Py_DECREF(doc_words);
            PyErr_Format(PyExc_ValueError, "transcript %zd changed after it was tokenized", doc);
            goto fail;
        }
        PyObject *pieces = PyList_New(0);
        if (pieces == NULL) {
            Py_DECREF(doc_words);
            goto fail;
        }
        int64_t at = begin;
        for (int64_t span = low; span < high; span++) {
            if (firsts[span] < begin || lasts[span] < firsts[span] || lasts[span] >= finish) {
                PyErr_SetString(PyExc_ValueError,
                                "a span does not cover tokens first..last of its transcript");
                goto fail_doc;
            }
            if (firsts[span] > at && append_texts(pieces, texts, at, firsts[span], skip_empty) < 0)
                goto fail_doc;
            /* after the texts: their __bool__ may have run code that changed the list */
            if (span >= PyList_GET_SIZE(replacements)) {
                PyErr_SetString(PyExc_ValueError, "the replacements list changed");
                goto fail_doc;
            }
            if (append_piece(pieces, PyList_GET_ITEM(replacements, span), skip_empty) < 0)
                goto fail_doc;
            if (lasts[span] + 1 > at)
                at = lasts[span] + 1;
        }
        if (append_texts(pieces, texts, at, finish, skip_empty) < 0)
            goto fail_doc;
        for (int64_t change = change_bounds[low]; change < change_bounds[high]; change++) {
            if (change >= PyList_GET_SIZE(new_words)) {
                PyErr_SetString(PyExc_ValueError, "the new words list changed");
                goto fail_doc;
            }
            /* compared before subtracting: changed_at may hold any int64 */
            if (changed_at[change] < begin || changed_at[change] >= finish) {
                PyErr_Format(PyExc_IndexError,
                             "a changed word of transcript %zd is outside it", doc);
                goto fail_doc;
            }
            PyObject *word = PyList_GET_ITEM(new_words, change);
            Py_INCREF(word);
            /* steals, drops the old; doc_words has finish - begin items (checked above) */
            PyList_SetItem(doc_words, (Py_ssize_t)(changed_at[change] - begin), word);
        }
        PyObject *text = PyUnicode_Join(space, pieces);
        Py_DECREF(pieces);
        pieces = NULL;
        PyObject *doc_spans = text == NULL ? NULL : PyList_GetSlice(spans, low, high);
        PyObject *fields[3] = {text, doc_words, doc_spans};
        PyObject *made = tuple_of(result_type, 3, fields);
        if (made == NULL)
            goto fail;
        int appended = PyList_Append(results, made);
        Py_DECREF(made);
        if (appended < 0)
            goto fail;
        continue;
    fail_doc:
        Py_XDECREF(pieces);
        Py_DECREF(doc_words);
        goto fail;
    }
    if (PyList_GET_SIZE(results) != documents) {
        PyErr_SetString(PyExc_ValueError, "the word lists changed");
        goto fail;
    }
    goto done;

fail:
    Py_CLEAR(results);
done:
    Py_XDECREF(space);
    for (int i = 0; i < held; i++)
        PyBuffer_Release(&views[i]);
    return results;
}

static PyMethodDef methods[] = {
    {"texts_and_ids", texts_and_ids, METH_VARARGS, texts_and_ids_doc},
    {"gather", gather, METH_VARARGS, gather_doc},
    {"changed_words", changed_words, METH_VARARGS, changed_words_doc},
    {"assemble", assemble, METH_VARARGS, assemble_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dsp.redact._words",
    .m_doc = "ASR word lists to flat columns and back (see dsp/redact/words.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__words(void)
{
    return PyModule_Create(&module_definition);
}
