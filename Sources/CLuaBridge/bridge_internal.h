#ifndef CLUABRIDGE_INTERNAL_H
#define CLUABRIDGE_INTERNAL_H

/* What functions.c borrows from bridge.c: the Lua state of an interpreter,
 * the redis.call run slot and the Lua -> RESP conversion. Not for Swift. */

#include "CLuaBridge.h"
#include <lua5.1/lua.h>

lua_State *dfly_bridge_state(dfly_lua *lua);
/* Points redis.call at `call`/`context` (malloc'ed slot; end_run frees it). */
void *dfly_bridge_begin_run(lua_State *L, dfly_lua_call_fn call, void *context);
void dfly_bridge_end_run(lua_State *L, void *run);
/* Notes whether the error table at `index` was counted already (see
 * dfly_lua_error_precounted); returns the flag. */
int dfly_bridge_is_precounted(lua_State *L, int index);
/* Encodes the value at `index` for a client speaking `client_resp` (the
 * script's redis.setresp applies while a run is begun). Appends to a
 * malloc'ed buffer *out of *length bytes. */
/* Redis 7's message handler for lua_pcall: whatever was raised becomes an
 * error table recording the source and line, for the "script: ..." suffix. */
int dfly_bridge_error_handler(lua_State *L);
void dfly_bridge_encode(lua_State *L, int index, int client_resp, char **out, size_t *length);

#endif
