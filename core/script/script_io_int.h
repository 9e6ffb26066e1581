/* script_io_int: what the files of a plugin's __bg table share (script_io.c and the
 * script_io_*.c beside it). Not part of the API; loop thread only. */
#ifndef BG_SCRIPT_IO_INT_H
#define BG_SCRIPT_IO_INT_H

#include <lauxlib.h>
#include <lua.h>

#include "script/script_int.h"

/* The runtime of the plugin state L (kept by its allocator). */
bg_runtime *bg__io_runtime(lua_State *L);
/* Bytes the plugin state of L may still allocate: its memory limit's and run r's (may be
 * NULL) remainders, the smaller; SIZE_MAX while no limit applies (outside plugin code). */
size_t bg__io_mem_left(lua_State *L, const bg__run *r);
/* Pushes nil and msg, or err's message when msg is NULL or empty, on co. */
void bg__io_push_error(lua_State *co, int err, const char *msg);
/* A uv_close callback that frees the handle. */
void bg__io_free_handle_cb(uv_handle_t *h);
/* A uv_alloc_cb: a malloc'ed buffer of the suggested size (len 0 when out of memory); the
 * read callback frees it. */
void bg__io_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
/* Sets each of fns as a plain C function in the table on top of L. */
void bg__io_setfuncs(lua_State *L, const luaL_Reg *fns);

/* Each sets its functions (and metatables) in the __bg table on top of L. */
void bg__script_open_io_fetch(lua_State *L);  /* http, mail */
void bg__script_open_io_tcp(lua_State *L);    /* tcp_connect */
void bg__script_open_io_udp(lua_State *L);    /* udp_send */
void bg__script_open_io_exec(lua_State *L);   /* exec */
void bg__script_open_io_sync(lua_State *L);   /* read_file, sha256, hmac_sha256, json_encode */
void bg__script_open_io_encode(lua_State *L); /* batch_open, encode */
void bg__script_open_io_dns(lua_State *L);    /* dns_resolve */
void bg__script_open_io_fs(lua_State *L);     /* stat, statvfs, list_dir, read_pidfile */
void bg__script_open_io_crypto(lua_State *L); /* md5_hex, sha256_raw, hmac_sha256_raw, ... */

#endif
