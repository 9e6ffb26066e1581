/* script_io_fs: what a plugin learns of files while its run waits: stat (uv_fs_stat), statvfs
 * and read_pidfile (on the libuv threadpool), list_dir (uv_fs_scandir). Each runs off the
 * loop's thread, so that a hung mount holds a threadpool thread and the run (until its
 * timeout), never the loop. Paths are absolute; the sandbox decides which ones a plugin may
 * give (list_dir: /proc and /sys only). */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "base/bg.h"
#include "script/script_io_int.h"

#define LIST_DIR_MAX 65536 /* names list_dir returns at most */
#define PIDFILE_MAX 64     /* bytes read_pidfile reads at most */
#define PATH_MAX_LEN 4096

enum { K_STAT, K_STATVFS, K_LIST, K_PIDFILE };

typedef struct fs_op {
  bg__op op;
  int kind;
  uv_fs_t fs;      /* K_STAT, K_LIST */
  uv_work_t work;  /* K_STATVFS, K_PIDFILE: the worker fills err, why and the result */
  int err;         /* a libuv error code (negative), 0 when none */
  const char *why; /* a message of ours instead of err's */
  struct statvfs sv;
  long pid;
  char path[];
} fs_op;

static void fs_cancel(bg__op *op) {
  fs_op *f = (fs_op *)op;
  /* queued: its callback runs with UV_ECANCELED; running: once done. Either way the callback
   * frees f, and op.run is already NULL. */
  if (f->kind == K_STAT || f->kind == K_LIST)
    uv_cancel((uv_req_t *)&f->fs);
  else
    uv_cancel((uv_req_t *)&f->work);
}

/* nil, "<path>: <why>", "<ECODE>" on co: 3 values. */
static void push_fail(lua_State *co, const fs_op *f, int err) {
  lua_pushnil(co);
  lua_pushfstring(co, "%s: %s", f->path, f->why ? f->why : uv_strerror(err));
  lua_pushstring(co, f->why ? "EINVAL" : uv_err_name(err));
}

static const char *type_name(uint64_t mode) {
  switch (mode & S_IFMT) {
  case S_IFREG:
    return "file";
  case S_IFDIR:
    return "directory";
  case S_IFLNK:
    return "link";
  case S_IFSOCK:
    return "socket";
  case S_IFIFO:
    return "fifo";
  default:
    return "other";
  }
}

/* Pushes the op's result on co and returns how many values. */
static int push_result(lua_State *co, fs_op *f) {
  if (f->kind == K_STAT) {
    if (f->fs.result < 0) {
      push_fail(co, f, (int)f->fs.result);
      return 3;
    }
    const uv_stat_t *st = &f->fs.statbuf;
    lua_createtable(co, 0, 6);
    lua_pushstring(co, type_name(st->st_mode));
    lua_setfield(co, -2, "type");
    lua_pushnumber(co, (double)st->st_size);
    lua_setfield(co, -2, "size");
    lua_pushnumber(co, (double)st->st_mtim.tv_sec + (double)st->st_mtim.tv_nsec / 1e9);
    lua_setfield(co, -2, "mtime");
    lua_pushinteger(co, (lua_Integer)(st->st_mode & 07777));
    lua_setfield(co, -2, "mode");
    lua_pushnumber(co, (double)st->st_uid);
    lua_setfield(co, -2, "uid");
    lua_pushnumber(co, (double)st->st_gid);
    lua_setfield(co, -2, "gid");
    return 1;
  }
  if (f->kind == K_LIST) {
    if (f->fs.result < 0) {
      push_fail(co, f, (int)f->fs.result);
      return 3;
    }
    if (f->fs.result > LIST_DIR_MAX) {
      f->why = "more than 65536 entries";
      push_fail(co, f, 0);
      return 3;
    }
    /* libuv's scandir leaves out . and .., and sorts the names (strcmp) */
    lua_createtable(co, (int)f->fs.result, 0);
    uv_dirent_t ent;
    int n = 0;
    while (uv_fs_scandir_next(&f->fs, &ent) == 0) {
      lua_pushstring(co, ent.name);
      lua_rawseti(co, -2, ++n);
    }
    return 1;
  }
  if (f->err != 0 || f->why != NULL) {
    push_fail(co, f, f->err);
    return 3;
  }
  if (f->kind == K_STATVFS) {
    double frsize = (double)(f->sv.f_frsize ? f->sv.f_frsize : f->sv.f_bsize);
    lua_pushnumber(co, (double)f->sv.f_blocks * frsize);
    lua_pushnumber(co, (double)f->sv.f_bavail * frsize);
    lua_pushnumber(co, (double)f->sv.f_files);
    lua_pushnumber(co, (double)f->sv.f_ffree);
    return 4;
  }
  lua_pushinteger(co, (lua_Integer)f->pid);
  return 1;
}

static void fs_done(fs_op *f) {
  bg__run *r = f->op.run;
  int n = r != NULL ? push_result(r->co, f) : 0;
  if (f->kind == K_STAT || f->kind == K_LIST) uv_fs_req_cleanup(&f->fs);
  free(f);
  if (r != NULL) bg__run_resume(r, n);
}

static void fs_cb(uv_fs_t *req) {
  fs_done(req->data);
}

static void work_after(uv_work_t *w, int status) {
  fs_op *f = w->data;
  if (status != 0 && f->err == 0) f->err = status; /* UV_ECANCELED: nobody waits any more */
  fs_done(f);
}

/* The pid on the first line of buf[0..n): optional blanks, decimal digits, optional blanks,
 * then the line's end. 0 when it is anything else (or not complete within the bytes read). */
static long parse_pid(const char *buf, size_t n, int complete) {
  size_t i = 0;
  while (i < n && (buf[i] == ' ' || buf[i] == '\t'))
    i++;
  long pid = 0;
  size_t digits = 0;
  while (i < n && buf[i] >= '0' && buf[i] <= '9') {
    if (pid > 99999999) return 0; /* far beyond any pid_max */
    pid = pid * 10 + (buf[i++] - '0');
    digits++;
  }
  while (i < n && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r'))
    i++;
  if (digits == 0 || (i < n && buf[i] != '\n') || (i == n && !complete)) return 0;
  return pid;
}

static void work_run(uv_work_t *w) {
  fs_op *f = w->data;
  if (f->kind == K_STATVFS) {
    if (statvfs(f->path, &f->sv) != 0) f->err = uv_translate_sys_error(errno);
    return;
  }
  /* A regular file only, looked at before it is opened: opening some devices does something
   * (a watchdog arms, a tape rewinds). Non-blocking, and the one opened must be the one
   * looked at, should the path change in between. */
  struct stat before, st;
  if (stat(f->path, &before) != 0) {
    f->err = uv_translate_sys_error(errno);
    return;
  }
  if (!S_ISREG(before.st_mode)) {
    f->why = "not a regular file";
    return;
  }
  int fd = open(f->path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    f->err = uv_translate_sys_error(errno);
    return;
  }
  char buf[PIDFILE_MAX];
  ssize_t n = -1;
  if (fstat(fd, &st) != 0)
    f->err = uv_translate_sys_error(errno);
  else if (!S_ISREG(st.st_mode) || st.st_dev != before.st_dev || st.st_ino != before.st_ino)
    f->why = "not a regular file";
  else {
    do
      n = read(fd, buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    if (n < 0) f->err = uv_translate_sys_error(errno);
  }
  close(fd);
  if (n < 0) return;
  f->pid = parse_pid(buf, (size_t)n, (size_t)n < sizeof buf);
  if (f->pid <= 0) f->why = "no process id on its first line";
}

/* Starts an op of kind on the path at 1 and suspends the run. */
static int start(lua_State *L, int kind) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  if (path[0] != '/' || strlen(path) != len || len > PATH_MAX_LEN)
    return luaL_argerror(L, 1, "an absolute path without NUL bytes");
  bg__run *r = bg__run_current(L);
  fs_op *f = calloc(1, sizeof *f + len + 1);
  if (f == NULL) return luaL_error(L, "out of memory");
  memcpy(f->path, path, len + 1);
  f->kind = kind;
  f->op.run = r;
  f->op.cancel = fs_cancel;
  f->fs.data = f;
  f->work.data = f;
  uv_loop_t *loop = bg__io_runtime(L)->loop;
  int rc = kind == K_STAT   ? uv_fs_stat(loop, &f->fs, f->path, fs_cb)
           : kind == K_LIST ? uv_fs_scandir(loop, &f->fs, f->path, 0, fs_cb)
                            : uv_queue_work(loop, &f->work, work_run, work_after);
  if (rc != 0) {
    if (kind == K_STAT || kind == K_LIST) uv_fs_req_cleanup(&f->fs);
    push_fail(L, f, rc);
    free(f);
    return 3;
  }
  return bg__run_wait(L, &f->op);
}

/* stat(path) -> { type, size, mtime, mode, uid, gid } | nil, err, code (follows links) */
static int pl_stat(lua_State *L) {
  return start(L, K_STAT);
}
/* statvfs(path) -> total_bytes, available_bytes, files, files_free | nil, err, code */
static int pl_statvfs(lua_State *L) {
  return start(L, K_STATVFS);
}
/* list_dir(path) -> { name, ... } (sorted, without . and ..) | nil, err, code */
static int pl_list_dir(lua_State *L) {
  return start(L, K_LIST);
}
/* read_pidfile(path) -> pid | nil, err, code: the number on the first line of a regular file's
 * first 64 bytes, nothing else of it. */
static int pl_read_pidfile(lua_State *L) {
  return start(L, K_PIDFILE);
}

/* Sets stat, statvfs, list_dir, read_pidfile in the __bg table on top of L. */
void bg__script_open_io_fs(lua_State *L) {
  static const luaL_Reg fns[] = {{"stat", pl_stat},
                                 {"statvfs", pl_statvfs},
                                 {"list_dir", pl_list_dir},
                                 {"read_pidfile", pl_read_pidfile},
                                 {NULL, NULL}};
  bg__io_setfuncs(L, fns);
}
