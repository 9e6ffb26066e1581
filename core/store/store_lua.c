/* store_lua: the Lua binding of core/store/store.
 *
 *   store_open(path[, { synchronous = "normal"|"full", recover = bool }])
 *                               -> db[, moved] | nil, err
 *                               (in the agent, with its loop: checkpoints in the background,
 *                               bg_store_checkpoint_in_background, and recover defaults to
 *                               true: a file SQLite cannot use is moved aside to `moved` and a
 *                               fresh one made, bg_store_open_recover)
 *   store_status()              -> { { db, path, up, open, durable, failing, since, error,
 *                                  replaced, errors = { [op] = n } }... } (store.h, "health")
 *   store_status_epoch()        -> n, changed by every change of up, durable or replaced
 *   db:exec(sql)                -> true | nil, err     (several statements, no parameters)
 *   db:query(sql, params...)    -> rows | nil, err     (a list of { column = value })
 *   db:run(sql, params...)      -> changes, last_insert_rowid | nil, err
 *   db:tx(fn, ...)              -> fn's results, after COMMIT | nil, err (begin/commit failed)
 *                                  an error in fn rolls back and is raised again unchanged;
 *                                  nested db:tx calls are savepoints; fn must not yield
 *   db:close()                  (also on garbage collection)
 *
 * Parameters and results: nil <-> NULL, boolean -> 0/1, a number with an integral value that
 * fits in 64 bits <-> INTEGER, any other number <-> REAL (NaN is stored as NULL), string <->
 * TEXT (a BLOB reads back as a string), a table -> TEXT of its JSON (bg_json_encode_compact:
 * no Lua string is made for it; what that encoder refuses fails the call with
 * nil, "store: JSON: <why>", and the caller may encode it some other way). A NULL column is
 * absent from its row table.
 * SQLite failures return nil, "store: <message> (in: <sql>)"; misuse raises: a closed db, a
 * parameter of another type, more or fewer parameters than the SQL has placeholders. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/jsonenc.h"
#include "store/store.h"

#define DB_MT "beagle.store.db"
#define ERRLEN 1024
/* Table parameters of one statement encoded into buffers kept by the db: SQLite reads them in
 * place (no copy, no malloc per parameter) until the statement is done. Past JSON_BUFS
 * tables, or past JSON_KEEP bytes of capacity, a buffer is made for the one call. */
#define JSON_BUFS 4
#define JSON_KEEP 65536

typedef struct ldb {
  bg_store *s;
  sqlite3_stmt *pending; /* handed out and not yet done: a raise while building rows */
  int in_tx;             /* db:tx frames running */
  bg_buf json[JSON_BUFS];
} ldb;

static void free_json(ldb *d) {
  for (int i = 0; i < JSON_BUFS; i++)
    bg_buf_free(&d->json[i]);
}

static int push_fail(lua_State *L, const char *err) {
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

static void settle(ldb *d) {
  if (d->pending) {
    bg_store_done(d->s, d->pending);
    d->pending = NULL;
  }
}

static ldb *check_db(lua_State *L) {
  ldb *d = luaL_checkudata(L, 1, DB_MT);
  if (d->s == NULL) luaL_error(L, "store: the database is closed");
  settle(d);
  return d;
}

/* Binds the Lua values from index first to the top: 0, or -1 with err set after giving st
 * back (a table its JSON can't be made of); misuse raises after giving st back. */
static int bind_params(lua_State *L, ldb *d, sqlite3_stmt *st, int first, char *err,
                       size_t errlen) {
  int n = lua_gettop(L) - first + 1;
  int want = sqlite3_bind_parameter_count(st);
  if (n != want) {
    bg_store_done(d->s, st);
    luaL_error(L, "store: %d parameters for %d placeholders", n, want);
  }
  int tables = 0;
  for (int i = 1; i <= n; i++) {
    int idx = first + i - 1;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
      sqlite3_bind_null(st, i);
      break;
    case LUA_TBOOLEAN:
      sqlite3_bind_int(st, i, lua_toboolean(L, idx));
      break;
    case LUA_TNUMBER: {
      double v = lua_tonumber(L, idx);
      if (v == floor(v) && v >= -9223372036854775808.0 && v < 9223372036854775808.0)
        sqlite3_bind_int64(st, i, (sqlite3_int64)v);
      else
        sqlite3_bind_double(st, i, v);
      break;
    }
    case LUA_TSTRING: {
      size_t len;
      const char *p = lua_tolstring(L, idx, &len);
      /* STATIC: the string stays on the stack until the statement is done */
      sqlite3_bind_text(st, i, p, (int)len, SQLITE_STATIC);
      break;
    }
    case LUA_TTABLE: {
      /* the JSON text goes from the encoder's buffer to SQLite: interning it as a Lua string
       * cost a hash and, for many near-identical payloads, a chain of memcmp */
      bg_buf one = {0}, *b = &one;
      if (tables < JSON_BUFS) {
        b = &d->json[tables++];
        if (b->cap > JSON_KEEP) bg_buf_free(b);
        bg_buf_reset(b);
      }
      int rc = bg_json_encode_compact(L, idx, b);
      const char *why = rc != 0 ? bg_strerror(rc) : NULL;
      if (rc == 0 && sqlite3_bind_text(st, i, b->data, (int)b->len,
                                       b == &one ? SQLITE_TRANSIENT : SQLITE_STATIC) != SQLITE_OK)
        why = "SQLite refused the text (too big, or out of memory)";
      bg_buf_free(&one);
      if (why != NULL) {
        bg_store_done(d->s, st);
        snprintf(err, errlen, "store: JSON: parameter %d: %s", i, why);
        return -1;
      }
      break;
    }
    default:
      bg_store_done(d->s, st);
      luaL_argerror(L, idx, "nil, boolean, number, string or table expected");
    }
  }
  return 0;
}

static void push_col(lua_State *L, sqlite3_stmt *st, int c) {
  switch (sqlite3_column_type(st, c)) {
  case SQLITE_INTEGER:
    lua_pushnumber(L, (lua_Number)sqlite3_column_int64(st, c));
    break;
  case SQLITE_FLOAT:
    lua_pushnumber(L, sqlite3_column_double(st, c));
    break;
  case SQLITE_TEXT:
  case SQLITE_BLOB: {
    const void *p = sqlite3_column_blob(st, c);
    lua_pushlstring(L, p ? p : "", (size_t)sqlite3_column_bytes(st, c));
    break;
  }
  default:
    lua_pushnil(L);
  }
}

/* Prepares sql and binds the parameters from index 3; NULL (with nil, err pushed) on error. */
static sqlite3_stmt *start(lua_State *L, ldb *d) {
  const char *sql = luaL_checkstring(L, 2);
  char err[ERRLEN];
  sqlite3_stmt *st;
  if (bg_store_prepare(d->s, sql, &st, err, sizeof err) != 0) {
    push_fail(L, err);
    return NULL;
  }
  if (bind_params(L, d, st, 3, err, sizeof err) != 0) {
    push_fail(L, err);
    return NULL;
  }
  d->pending = st;
  return st;
}

static int l_query(lua_State *L) {
  ldb *d = check_db(L);
  sqlite3_stmt *st = start(L, d);
  if (st == NULL) return 2;
  char err[ERRLEN];
  int ncol = sqlite3_column_count(st), n = 0, rc;
  lua_newtable(L);
  while ((rc = bg_store_step(d->s, st, err, sizeof err)) == 1) {
    lua_createtable(L, 0, ncol);
    for (int c = 0; c < ncol; c++) {
      const char *name = sqlite3_column_name(st, c);
      if (name == NULL) continue;
      push_col(L, st, c);
      lua_setfield(L, -2, name);
    }
    lua_rawseti(L, -2, ++n);
  }
  settle(d);
  if (rc < 0) return push_fail(L, err);
  return 1;
}

static int l_run(lua_State *L) {
  ldb *d = check_db(L);
  sqlite3_stmt *st = start(L, d);
  if (st == NULL) return 2;
  char err[ERRLEN];
  int rc;
  while ((rc = bg_store_step(d->s, st, err, sizeof err)) == 1) {
  }
  settle(d);
  if (rc < 0) return push_fail(L, err);
  sqlite3 *db = bg_store_db(d->s);
  lua_pushnumber(L, (lua_Number)sqlite3_changes(db));
  lua_pushnumber(L, (lua_Number)sqlite3_last_insert_rowid(db));
  return 2;
}

static int l_exec(lua_State *L) {
  ldb *d = check_db(L);
  const char *sql = luaL_checkstring(L, 2);
  char err[ERRLEN];
  if (bg_store_exec(d->s, sql, err, sizeof err) != 0) return push_fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_tx(lua_State *L) {
  ldb *d = check_db(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  char err[ERRLEN];
  int top = lua_gettop(L);
  if (bg_store_begin(d->s, err, sizeof err) != 0) return push_fail(L, err);
  d->in_tx++;
  lua_pushvalue(L, 2);
  for (int i = 3; i <= top; i++)
    lua_pushvalue(L, i);
  int rc = lua_pcall(L, top - 2, LUA_MULTRET, 0);
  d->in_tx--;
  settle(d);
  if (rc != 0) {
    bg_store_rollback(d->s, NULL, 0);
    return lua_error(L);
  }
  if (bg_store_commit(d->s, err, sizeof err) != 0) return push_fail(L, err);
  return lua_gettop(L) - top;
}

static int l_close(lua_State *L) {
  ldb *d = luaL_checkudata(L, 1, DB_MT);
  if (d->in_tx > 0) return luaL_error(L, "store: close inside db:tx");
  settle(d);
  bg_store_close(d->s);
  d->s = NULL;
  free_json(d);
  return 0;
}

static int l_gc(lua_State *L) {
  ldb *d = luaL_checkudata(L, 1, DB_MT);
  settle(d);
  bg_store_close(d->s);
  d->s = NULL;
  free_json(d);
  return 0;
}

static int l_tostring(lua_State *L) {
  ldb *d = luaL_checkudata(L, 1, DB_MT);
  if (d->s == NULL) {
    lua_pushstring(L, "store (closed)");
  } else {
    const char *f = sqlite3_db_filename(bg_store_db(d->s), "main");
    lua_pushfstring(L, "store (%s)", f && *f ? f : ":memory:");
  }
  return 1;
}

static int l_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *sync = "normal";
  uv_loop_t *loop = lua_touserdata(L, lua_upvalueindex(1));
  int recover = loop != NULL;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "synchronous");
    if (!lua_isnil(L, -1)) sync = luaL_checkstring(L, -1);
    if (strcmp(sync, "normal") != 0 && strcmp(sync, "full") != 0)
      return luaL_argerror(L, 2, "synchronous must be \"normal\" or \"full\"");
    lua_pop(L, 1);
    lua_getfield(L, 2, "recover");
    if (!lua_isnil(L, -1)) recover = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  /* the userdata first, so that a raise below cannot leak the store */
  ldb *d = lua_newuserdata(L, sizeof *d);
  memset(d, 0, sizeof *d);
  luaL_getmetatable(L, DB_MT);
  lua_setmetatable(L, -2);
  char err[ERRLEN], moved[1100] = "";
  int rc = recover ? bg_store_open_recover(path, &d->s, moved, sizeof moved, err, sizeof err)
                   : bg_store_open(path, &d->s, err, sizeof err);
  if (rc != 0) return push_fail(L, err);
  if (strcmp(sync, "full") == 0 &&
      bg_store_exec(d->s, "PRAGMA synchronous=FULL", err, sizeof err) != 0) {
    bg_store_close(d->s);
    d->s = NULL;
    return push_fail(L, err);
  }
  /* in the agent, checkpoints run on the thread pool (a ":memory:" db has none to run) */
  if (loop != NULL) bg_store_checkpoint_in_background(d->s, loop, sync);
  if (*moved == '\0') return 1;
  lua_pushstring(L, moved);
  return 2;
}

static void ensure_meta(lua_State *L) {
  if (luaL_newmetatable(L, DB_MT)) {
    static const luaL_Reg m[] = {{"exec", l_exec}, {"query", l_query}, {"run", l_run},
                                 {"tx", l_tx},     {"close", l_close}, {NULL, NULL}};
    lua_newtable(L);
    for (const luaL_Reg *f = m; f->name; f++) {
      lua_pushcfunction(L, f->func);
      lua_setfield(L, -2, f->name);
    }
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}

/* store_json(v) -> text | nil, err: the compact JSON of the store's columns (jsonenc.h) */
static int l_json(lua_State *L) {
  bg_buf b = {0};
  int rc = bg_json_encode_compact(L, 1, &b);
  if (rc == 0)
    lua_pushlstring(L, b.data, b.len);
  else
    lua_pushnil(L);
  bg_buf_free(&b);
  if (rc == 0) return 1;
  lua_pushstring(L, bg_strerror(rc));
  return 2;
}

static int l_status(lua_State *L) {
  int n = bg_store_health_count();
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    const bg_store_health *h = bg_store_health_at(i);
    lua_createtable(L, 0, 10);
    lua_pushstring(L, h->db);
    lua_setfield(L, -2, "db");
    lua_pushstring(L, h->path);
    lua_setfield(L, -2, "path");
    lua_pushboolean(L, h->open && h->durable && !h->failing);
    lua_setfield(L, -2, "up");
    lua_pushboolean(L, h->open);
    lua_setfield(L, -2, "open");
    lua_pushboolean(L, h->durable);
    lua_setfield(L, -2, "durable");
    lua_pushboolean(L, h->failing);
    lua_setfield(L, -2, "failing");
    if (h->since > 0) {
      lua_pushnumber(L, h->since);
      lua_setfield(L, -2, "since");
    }
    if (h->error[0]) {
      lua_pushstring(L, h->error);
      lua_setfield(L, -2, "error");
    }
    if (h->replaced[0]) {
      lua_pushstring(L, h->replaced);
      lua_setfield(L, -2, "replaced");
    }
    lua_createtable(L, 0, BG_STORE_NOPS);
    for (int op = 0; op < BG_STORE_NOPS; op++) {
      lua_pushnumber(L, (lua_Number)h->errors[op]);
      lua_setfield(L, -2, bg_store_op_name(op));
    }
    lua_setfield(L, -2, "errors");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int l_status_epoch(lua_State *L) {
  lua_pushnumber(L, bg_store_health_epoch());
  return 1;
}

void bg_store_open_lua(lua_State *L, uv_loop_t *loop) {
  ensure_meta(L);
  lua_pushlightuserdata(L, loop);
  lua_pushcclosure(L, l_open, 1);
  lua_setfield(L, -2, "store_open");
  lua_pushcfunction(L, l_json);
  lua_setfield(L, -2, "store_json");
  lua_pushcfunction(L, l_status);
  lua_setfield(L, -2, "store_status");
  lua_pushcfunction(L, l_status_epoch);
  lua_setfield(L, -2, "store_status_epoch");
}

int luaopen_beagle_store(lua_State *L) {
  lua_newtable(L);
  bg_store_open_lua(L, NULL);
  return 1;
}
