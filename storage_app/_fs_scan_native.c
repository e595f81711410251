/*
 * The inner loop of storage_app.fs_scan: open one folder and list it, stat'ing its entries,
 * without holding the GIL.
 *
 * It does nothing the pure-Python twins in fs_scan.py (_visit_py, _list_batch_py) do not do
 * the same way (the tests run both on the same trees): folders are opened relative to their
 * parent's descriptor with O_DIRECTORY | O_NOFOLLOW, entries are read with getdents64 and
 * stat'ed with fstatat(fd, name, AT_SYMLINK_NOFOLLOW); no symlink is followed and no file is
 * opened. The walk itself, the hard-link set and the heap of candidates stay in Python. What
 * it buys is that the system calls of a whole folder run in a row with the GIL released, so
 * that two scanning threads keep both CPUs in the kernel, where a scan spends most of its time,
 * with one GIL hand-over per folder.
 *
 * visit(parent_fd, name, close_parent, root_dev, <filter>, limit)
 *   -> (status, fd, dev, ino, dir_blocks, <batch>, fd)
 * Opens `name` in `parent_fd`, checks it is on root_dev, and lists its first batch; closes
 * `parent_fd` afterwards if `close_parent` (its last subfolder). status: 0, an errno from
 * openat or fstat, or -1 for a folder on another file system (closed, not counted). fd: the
 * folder's descriptor, or -1 once closed: after an error, and when the folder is listed to the
 * end without subfolders (nothing left to open in it). dir_blocks: the folder's st_blocks * 512
 * (also when openat said EACCES: fstatat still sizes it), or -1 when it is not to be counted.
 * The last item is what to read the next batches from (the Python twin's is an iterator).
 *
 * list_batch(fd, root_dev, <filter>, limit) -> <batch>
 * The next batch of a folder that visit() did not list to the end (or of the root).
 *
 * <filter> = want, order, t_blocks, t_sec, t_nsec, future, f_sec, f_nsec
 * <batch> = subdirs, blocks, files, picks, errors, eof
 * A batch reads the directory from the descriptor's current offset until at least `limit`
 * entries are done or the end is reached (eof), so that one call's memory is bounded and the
 * caller can tighten the threshold between calls.
 *   subdirs: names (bytes) of entries that are directories (by d_type, or by fstatat when
 *            d_type is unknown or the entry changed type); not stat'ed: visit() opens them.
 *   blocks:  st_blocks * 512 summed over the other entries with st_nlink == 1 on root_dev.
 *   files:   regular files among those.
 *   picks:   (name, mode, size, blocks_bytes, mtime_sec, mtime_nsec, dev, ino, nlink) of every
 *            non-directory with st_nlink > 1 (the caller counts each inode once), and of
 *            regular files that may enter the candidates (want == 1: all of them; want == 2:
 *            those not after (t_blocks, t_sec, t_nsec) in cleanup order, ties included) or
 *            whose mtime is after (f_sec, f_nsec) when `future` is set.
 *   errors:  entries that vanished or could not be stat'ed, and a failed getdents64.
 * Entries on another device than root_dev (a file bind-mounted into the tree) are skipped.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

#define BUFFER_SIZE (64 * 1024)

/* The kernel's record for getdents64 (glibc only declares it under _GNU_SOURCE). */
struct dirent64_record {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};


struct pick {
    size_t name_at;
    size_t name_len;
    struct stat st;
};

struct name_ref {
    size_t at, len;
};

struct batch {
    char *names; /* every kept name, back to back */
    size_t names_len, names_cap;
    struct name_ref *subdirs;
    size_t subdirs_len, subdirs_cap;
    struct pick *picks;
    size_t picks_len, picks_cap;
    long long blocks, files, errors;
    int eof, no_memory;
};

static int grow(void **array, size_t *cap, size_t needed, size_t item)
{
    if (needed <= *cap)
        return 0;
    size_t cap_new = *cap ? *cap * 2 : 64;
    while (cap_new < needed)
        cap_new *= 2;
    void *bigger = realloc(*array, cap_new * item);
    if (!bigger)
        return -1;
    *array = bigger;
    *cap = cap_new;
    return 0;
}

static int keep_name(struct batch *b, const char *name, size_t len, size_t *at)
{
    if (grow((void **)&b->names, &b->names_cap, b->names_len + len, 1))
        return -1;
    memcpy(b->names + b->names_len, name, len);
    *at = b->names_len;
    b->names_len += len;
    return 0;
}

static int add_subdir(struct batch *b, const char *name, size_t len)
{
    size_t at;
    if (grow((void **)&b->subdirs, &b->subdirs_cap, b->subdirs_len + 1, sizeof(struct name_ref)))
        return -1;
    if (keep_name(b, name, len, &at))
        return -1;
    b->subdirs[b->subdirs_len].at = at;
    b->subdirs[b->subdirs_len].len = len;
    b->subdirs_len++;
    return 0;
}

static int add_pick(struct batch *b, const char *name, size_t len, const struct stat *st)
{
    size_t at;
    if (grow((void **)&b->picks, &b->picks_cap, b->picks_len + 1, sizeof(struct pick)))
        return -1;
    if (keep_name(b, name, len, &at))
        return -1;
    b->picks[b->picks_len].name_at = at;
    b->picks[b->picks_len].name_len = len;
    b->picks[b->picks_len].st = *st;
    b->picks_len++;
    return 0;
}

/* (a1, a2, a3) <= (b1, b2, b3), lexicographically. */
static int not_after(long long a1, long long a2, long long a3, long long b1, long long b2,
                     long long b3)
{
    if (a1 != b1)
        return a1 < b1;
    if (a2 != b2)
        return a2 < b2;
    return a3 <= b3;
}

struct wanted {
    int want, order, future;
    long long t_blocks, t_sec, t_nsec, f_sec, f_nsec;
};

static int is_picked(const struct wanted *w, const struct stat *st)
{
    long long blocks = (long long)st->st_blocks * 512;
    long long sec = (long long)st->st_mtim.tv_sec, nsec = (long long)st->st_mtim.tv_nsec;
    if (w->future && (sec > w->f_sec || (sec == w->f_sec && nsec > w->f_nsec)))
        return 1;
    if (w->want == 1)
        return 1;
    if (w->want != 2)
        return 0;
    if (w->order == 0) /* largest: more blocks first, then older */
        return not_after(-blocks, sec, nsec, -w->t_blocks, w->t_sec, w->t_nsec);
    /* oldest: older first, then more blocks */
    return not_after(sec, nsec, -blocks, w->t_sec, w->t_nsec, -w->t_blocks);
}

static void list_entries(int fd, dev_t root_dev, const struct wanted *w, long limit,
                         struct batch *b)
{
    char *buffer = malloc(BUFFER_SIZE);
    long done = 0;
    if (!buffer) {
        b->no_memory = 1;
        return;
    }
    while (done < limit) {
        long got = syscall(SYS_getdents64, fd, buffer, BUFFER_SIZE);
        if (got <= 0) {
            if (got < 0)
                b->errors++;
            b->eof = 1;
            break;
        }
        for (long at = 0; at < got;) {
            struct dirent64_record *d = (struct dirent64_record *)(buffer + at);
            const char *name = d->d_name;
            size_t len = strlen(name);
            struct stat st;
            at += d->d_reclen;
            if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')))
                continue;
            done++;
            if (d->d_type == DT_DIR) {
                if (add_subdir(b, name, len))
                    goto out_of_memory;
                continue;
            }
            if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                b->errors++; /* vanished since the listing, or not ours to see */
                continue;
            }
            if (S_ISDIR(st.st_mode)) {
                if (add_subdir(b, name, len))
                    goto out_of_memory;
                continue;
            }
            if (st.st_dev != root_dev)
                continue;
            if (st.st_nlink > 1) {
                if (add_pick(b, name, len, &st))
                    goto out_of_memory;
                continue;
            }
            b->blocks += (long long)st.st_blocks * 512;
            if (!S_ISREG(st.st_mode))
                continue;
            b->files++;
            if (is_picked(w, &st) && add_pick(b, name, len, &st))
                goto out_of_memory;
        }
    }
    free(buffer);
    return;
out_of_memory:
    b->no_memory = 1;
    free(buffer);
}

/* The batch's subdirs and picks as new lists; -1 with an exception set if out of memory. */
static int build_lists(const struct batch *b, PyObject **subdirs_out, PyObject **picks_out)
{
    PyObject *subdirs = PyList_New((Py_ssize_t)b->subdirs_len);
    PyObject *picks = PyList_New((Py_ssize_t)b->picks_len);
    if (!subdirs || !picks)
        goto fail;
    for (size_t i = 0; i < b->subdirs_len; i++) {
        const struct name_ref *r = &b->subdirs[i];
        PyObject *name = PyBytes_FromStringAndSize(b->names + r->at, (Py_ssize_t)r->len);
        if (!name)
            goto fail;
        PyList_SET_ITEM(subdirs, (Py_ssize_t)i, name);
    }
    for (size_t i = 0; i < b->picks_len; i++) {
        const struct pick *p = &b->picks[i];
        PyObject *item = Py_BuildValue(
            "(y#iLLLlKKK)", b->names + p->name_at, (Py_ssize_t)p->name_len, (int)p->st.st_mode,
            (long long)p->st.st_size, (long long)p->st.st_blocks * 512,
            (long long)p->st.st_mtim.tv_sec, (long)p->st.st_mtim.tv_nsec,
            (unsigned long long)p->st.st_dev, (unsigned long long)p->st.st_ino,
            (unsigned long long)p->st.st_nlink);
        if (!item)
            goto fail;
        PyList_SET_ITEM(picks, (Py_ssize_t)i, item);
    }
    *subdirs_out = subdirs;
    *picks_out = picks;
    return 0;
fail:
    Py_XDECREF(subdirs);
    Py_XDECREF(picks);
    return -1;
}

static void free_batch(struct batch *b)
{
    free(b->names);
    free(b->subdirs);
    free(b->picks);
}

static PyObject *list_batch(PyObject *module, PyObject *args)
{
    int fd, future;
    unsigned long long root_dev;
    long limit;
    struct wanted w;
    struct batch b;
    PyObject *result, *subdirs, *picks;
    (void)module;
    if (!PyArg_ParseTuple(args, "iKiiLLLpLLl", &fd, &root_dev, &w.want, &w.order, &w.t_blocks,
                          &w.t_sec, &w.t_nsec, &future, &w.f_sec, &w.f_nsec, &limit))
        return NULL;
    w.future = future;
    memset(&b, 0, sizeof b);
    Py_BEGIN_ALLOW_THREADS
    list_entries(fd, (dev_t)root_dev, &w, limit, &b);
    Py_END_ALLOW_THREADS
    result = NULL;
    if (b.no_memory)
        PyErr_NoMemory();
    else if (build_lists(&b, &subdirs, &picks) == 0)
        result = Py_BuildValue("(NLLNLO)", subdirs, b.blocks, b.files, picks, b.errors,
                               b.eof ? Py_True : Py_False);
    free_batch(&b);
    return result;
}

static PyObject *visit(PyObject *module, PyObject *args)
{
    int parent_fd, close_parent, future, fd, status = 0;
    const char *name;
    Py_ssize_t name_len;
    unsigned long long root_dev;
    long limit;
    long long dir_blocks = -1;
    struct wanted w;
    struct batch b;
    struct stat st;
    PyObject *result, *subdirs, *picks;
    (void)module;
    if (!PyArg_ParseTuple(args, "iy#pKiiLLLpLLl", &parent_fd, &name, &name_len, &close_parent,
                          &root_dev, &w.want, &w.order, &w.t_blocks, &w.t_sec, &w.t_nsec, &future,
                          &w.f_sec, &w.f_nsec, &limit))
        return NULL;
    if ((size_t)name_len != strlen(name)) {
        PyErr_SetString(PyExc_ValueError, "embedded null byte");
        return NULL;
    }
    w.future = future;
    memset(&b, 0, sizeof b);
    memset(&st, 0, sizeof st);
    Py_BEGIN_ALLOW_THREADS
    fd = openat(parent_fd, name, DIR_FLAGS);
    if (fd < 0) {
        status = errno;
        /* Like du, a folder we may not enter still occupies its own blocks. */
        if (status == EACCES && fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISDIR(st.st_mode) && st.st_dev == (dev_t)root_dev)
            dir_blocks = (long long)st.st_blocks * 512;
    } else if (fstat(fd, &st) != 0) {
        status = errno;
        close(fd);
        fd = -1;
    } else if (st.st_dev != (dev_t)root_dev) {
        status = -1; /* a mount point: another file system's usage */
        close(fd);
        fd = -1;
    } else {
        dir_blocks = (long long)st.st_blocks * 512;
        list_entries(fd, (dev_t)root_dev, &w, limit, &b);
        if (b.no_memory || (b.eof && b.subdirs_len == 0)) {
            close(fd);
            fd = -1;
        }
    }
    /* Not after a failure that raises: the caller then still owns the parent's descriptor. */
    if (close_parent && !b.no_memory)
        close(parent_fd);
    Py_END_ALLOW_THREADS
    result = NULL;
    if (b.no_memory)
        PyErr_NoMemory();
    else if (build_lists(&b, &subdirs, &picks) == 0)
        /* The last item is where the next batches come from: the same descriptor. */
        result = Py_BuildValue("(iiKKLNLLNLOi)", status, fd, (unsigned long long)st.st_dev,
                               (unsigned long long)st.st_ino, dir_blocks, subdirs, b.blocks,
                               b.files, picks, b.errors, b.eof ? Py_True : Py_False, fd);
    free_batch(&b);
    return result;
}

static PyMethodDef methods[] = {
    {"visit", visit, METH_VARARGS, "Open a folder and list its first entries; see the file."},
    {"list_batch", list_batch, METH_VARARGS, "List the next entries of a folder; see the file."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fs_scan_native", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fs_scan_native(void)
{
    return PyModule_Create(&module);
}
