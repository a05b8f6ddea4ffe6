/* LD_PRELOAD shim for tests/power_loss.rs: records, in order, every change a process
 * makes to the files under $PB_SHIM_DIR (opens with O_CREAT/O_TRUNC, writes, truncates,
 * fsync/fdatasync of files and of the directory, unlinks) and every line it writes to
 * stderr that starts with "PBMARK" (what the program claimed, at that moment), into the
 * binary log $PB_SHIM_LOG. The test then rebuilds the directory as a power cut at any
 * point would have left it: everything synced, plus any subset of what was not.
 *
 * Record: u8 op | u32 path_len | path | i64 offset | u32 data_len | data.
 * The calls themselves are passed through unchanged, except with $PB_SHIM_FULL_AFTER
 * set: once that many bytes were written to the tracked files, further writes (and
 * extending truncates) fail with ENOSPC, as on a full disk. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { OP_CREATE = 1, OP_WRITE = 2, OP_SYNC = 3, OP_TRUNCATE = 4, OP_UNLINK = 5, OP_MARK = 6 };

#define MAX_FD 4096
static char *paths[MAX_FD];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;
static const char *dir;
static size_t dir_len;
static long long full_after = -1; /* bytes before ENOSPC; -1: never */
static long long written;

static void init(void) {
    if (dir) return;
    const char *d = getenv("PB_SHIM_DIR");
    const char *l = getenv("PB_SHIM_LOG");
    if (!d || !l) { dir = ""; dir_len = 0; return; }
    dir = d;
    dir_len = strlen(d);
    const char *f = getenv("PB_SHIM_FULL_AFTER");
    if (f) full_after = atoll(f);
    log_fd = (int)syscall(SYS_openat, AT_FDCWD, l, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static int tracked(const char *path) {
    init();
    return dir_len > 0 && path && strncmp(path, dir, dir_len) == 0 &&
           (path[dir_len] == '/' || path[dir_len] == 0);
}

static void put(const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = syscall(SYS_write, log_fd, c, n);
        if (w <= 0) return;
        c += w;
        n -= (size_t)w;
    }
}

static void record(uint8_t op, const char *path, int64_t offset, const void *data, uint32_t len) {
    if (log_fd < 0) return;
    uint32_t plen = (uint32_t)strlen(path);
    pthread_mutex_lock(&lock);
    put(&op, 1);
    put(&plen, 4);
    put(path, plen);
    put(&offset, 8);
    put(&len, 4);
    if (len) put(data, len);
    pthread_mutex_unlock(&lock);
}

#define REAL(name, ret, ...) \
    static ret (*real_##name)(__VA_ARGS__); \
    if (!real_##name) real_##name = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

static void opened(int fd, const char *path, int flags) {
    if (fd < 0 || fd >= MAX_FD || !tracked(path)) return;
    free(paths[fd]);
    paths[fd] = strdup(path);
    if (flags & (O_CREAT | O_TRUNC)) record(OP_CREATE, path, flags & O_TRUNC ? 1 : 0, 0, 0);
}

static const char *path_of(int fd) {
    return fd >= 0 && fd < MAX_FD ? paths[fd] : 0;
}

/* Whether a write of `count` bytes to `fd` finds the disk full. */
static int full(int fd, size_t count) {
    if (!path_of(fd) || full_after < 0) return 0;
    if (written + (long long)count > full_after) { errno = ENOSPC; return 1; }
    written += (long long)count;
    return 0;
}

int open(const char *path, int flags, ...) {
    REAL(open, int, const char *, int, ...);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) { va_list a; va_start(a, flags); mode = va_arg(a, mode_t); va_end(a); }
    int fd = real_open(path, flags, mode);
    opened(fd, path, flags);
    return fd;
}

int open64(const char *path, int flags, ...) {
    REAL(open64, int, const char *, int, ...);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) { va_list a; va_start(a, flags); mode = va_arg(a, mode_t); va_end(a); }
    int fd = real_open64(path, flags, mode);
    opened(fd, path, flags);
    return fd;
}

int openat(int dirfd, const char *path, int flags, ...) {
    REAL(openat, int, int, const char *, int, ...);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) { va_list a; va_start(a, flags); mode = va_arg(a, mode_t); va_end(a); }
    int fd = real_openat(dirfd, path, flags, mode);
    if (path && path[0] == '/') opened(fd, path, flags);
    return fd;
}

int openat64(int dirfd, const char *path, int flags, ...) {
    REAL(openat64, int, int, const char *, int, ...);
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) { va_list a; va_start(a, flags); mode = va_arg(a, mode_t); va_end(a); }
    int fd = real_openat64(dirfd, path, flags, mode);
    if (path && path[0] == '/') opened(fd, path, flags);
    return fd;
}

int close(int fd) {
    REAL(close, int, int);
    if (fd >= 0 && fd < MAX_FD && paths[fd]) { free(paths[fd]); paths[fd] = 0; }
    return real_close(fd);
}

static void wrote(int fd, off_t offset, const void *buf, ssize_t n) {
    const char *p = path_of(fd);
    if (p && n > 0) record(OP_WRITE, p, offset, buf, (uint32_t)n);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite, ssize_t, int, const void *, size_t, off_t);
    if (full(fd, count)) return -1;
    ssize_t n = real_pwrite(fd, buf, count, offset);
    wrote(fd, offset, buf, n);
    return n;
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite64, ssize_t, int, const void *, size_t, off_t);
    if (full(fd, count)) return -1;
    ssize_t n = real_pwrite64(fd, buf, count, offset);
    wrote(fd, offset, buf, n);
    return n;
}

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write, ssize_t, int, const void *, size_t);
    const char *p = path_of(fd);
    if (full(fd, count)) return -1;
    off_t at = p ? lseek(fd, 0, SEEK_CUR) : 0;
    ssize_t n = real_write(fd, buf, count);
    if (p) wrote(fd, at, buf, n);
    init();
    if (fd == 2 && n >= 6 && memcmp(buf, "PBMARK", 6) == 0) record(OP_MARK, "", 0, buf, (uint32_t)n);
    return n;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    REAL(writev, ssize_t, int, const struct iovec *, int);
    const char *p = path_of(fd);
    off_t at = p ? lseek(fd, 0, SEEK_CUR) : 0;
    ssize_t n = real_writev(fd, iov, iovcnt);
    for (int i = 0; p && n > 0 && i < iovcnt; i++) {
        ssize_t part = (ssize_t)iov[i].iov_len < n ? (ssize_t)iov[i].iov_len : n;
        wrote(fd, at, iov[i].iov_base, part);
        at += part;
        n -= part;
    }
    return n;
}

int fsync(int fd) {
    REAL(fsync, int, int);
    int r = real_fsync(fd);
    const char *p = path_of(fd);
    if (p && r == 0) record(OP_SYNC, p, 0, 0, 0);
    return r;
}

int fdatasync(int fd) {
    REAL(fdatasync, int, int);
    int r = real_fdatasync(fd);
    const char *p = path_of(fd);
    if (p && r == 0) record(OP_SYNC, p, 0, 0, 0);
    return r;
}

int ftruncate(int fd, off_t len) {
    REAL(ftruncate, int, int, off_t);
    int r = real_ftruncate(fd, len);
    const char *p = path_of(fd);
    if (p && r == 0) record(OP_TRUNCATE, p, len, 0, 0);
    return r;
}

int ftruncate64(int fd, off_t len) {
    REAL(ftruncate64, int, int, off_t);
    int r = real_ftruncate64(fd, len);
    const char *p = path_of(fd);
    if (p && r == 0) record(OP_TRUNCATE, p, len, 0, 0);
    return r;
}

int unlink(const char *path) {
    REAL(unlink, int, const char *);
    int r = real_unlink(path);
    if (r == 0 && tracked(path)) record(OP_UNLINK, path, 0, 0, 0);
    return r;
}
