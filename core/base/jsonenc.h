/* jsonenc.h: lua/beagle/json.lua's encode, in C. Walks a Lua value and produces exactly the
 * bytes json.encode returns for it: keys sorted bytewise (non-string keys through tostring), a
 * table is an array when its metatable says __json_array or #t > 0, NaN/Inf and cjson.null
 * become null, integral numbers below 1e15 print as integers and others as %.17g, strings
 * escape '"', '\\', control characters and DEL only, nesting stops at 64 levels. Plugin code
 * runs with the JIT off, where the Lua encoder costs tens of microseconds a notification.
 * Like json.lua it calls the state's global tostring for functions, userdata and non-string
 * keys, and indexes tables the ordinary way (metamethods run). It owns nothing past a call. */
#ifndef BG_JSONENC_H
#define BG_JSONENC_H

#include <lua.h>

#include "base/bg.h"

/* json.lua's nesting limit: a table deeper than this many levels is an error. */
#define BG_JSON_MAX_DEPTH 64

/* Appends the JSON text of the value at idx to out. Returns 0 (nothing pushed), or BG_ELIMIT
 * (nested too deep), BG_ENOMEM, or BG_EINVAL (a metamethod or tostring raised, or returned
 * a non-string) with the error message pushed on L's stack. Never raises; needs 3 free stack
 * slots. On error out holds a partial text; out stays the caller's to free either way. */
int bg_json_encode(lua_State *L, int idx, bg_buf *out);

/* Like bg_json_encode, but pushes the text as a Lua string (or the error message) and keeps
 * no buffer of the caller's: the form a lua_CFunction returns. */
int bg_json_encode_push(lua_State *L, int idx);

/* What the store writes into its JSON columns, at cjson's speed and close to its output, but
 * raw: no metamethod runs and nothing is called, so it never raises. Keys in table order; a
 * table whose keys are all positive integers (the largest at most twice their count, or 10)
 * is an array with null holes, an empty one "{}"; numbers as integers below 1e15, else %.14g
 * (the last digit may differ from printf's in rare near-ties, see fmt_g14); NaN/Inf and
 * cjson.null as null. Returns 0, BG_EINVAL for what JSON can't hold (a function, userdata,
 * a boolean or table key), BG_ELIMIT past 64 levels, BG_ENOMEM. The stack is left as found;
 * out holds partial text on error. */
int bg_json_encode_compact(lua_State *L, int idx, bg_buf *out);

#endif
