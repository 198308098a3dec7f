#ifndef CLUABRIDGE_H
#define CLUABRIDGE_H

/// The bridge between Damselfly and Lua 5.1 (Debian's liblua5.1, the
/// version Redis embeds, so scripts written for Redis behave the same).
/// The Lua C API is mostly macros, so the whole conversion between RESP
/// replies and Lua values lives here, in C; Swift sees a handful of calls.

#include <stddef.h>
#include <stdint.h>

typedef struct dfly_lua dfly_lua;

/// Runs one redis.call/pcall command for the script. Fills *out with a
/// malloc'ed RESP encoding of the reply (RESP2 or RESP3 as `resp` says).
typedef void (*dfly_lua_call_fn)(void *context, int argc, const char **argv, const size_t *lengths, int resp,
                                 char **out, size_t *out_length);
/// The `resp` a dfly_lua_call_fn gets for redis.acl_check_cmd: run nothing, only
/// say whether the script's user may run this command with these arguments
/// (":1" or ":0"), or reply an error for a command that does not exist.
#define DFLY_LUA_ACL_CHECK (-1)

/// Whether the error the last script run or function call on this thread
/// replied with was already counted in the error statistics (an error reply of a
/// command the script called: Redis does not count it twice).
int dfly_lua_error_precounted(void);

/// Asked from inside a running script (every 100k Lua instructions, then on
/// every line once it answered yes): nonzero stops the script with Redis's
/// "ERR Script killed by user with SCRIPT KILL..." error. `context` is the
/// pointer given to dfly_lua_set_interrupt.
typedef int (*dfly_lua_interrupt_fn)(void *context);

/// A sandboxed interpreter with redis.*, cjson, bit, cmsgpack and struct
/// loaded (cjson and bit when their Debian modules are installed), globals and
/// library tables read-only as in Redis 7. One per thread.
dfly_lua *dfly_lua_create(void);
/// Installs the check the interpreter's count hook calls (kept across SCRIPT FLUSH).
void dfly_lua_set_interrupt(dfly_lua *lua, dfly_lua_interrupt_fn fn, void *context);
void dfly_lua_destroy(dfly_lua *lua);

/// Compiles `body` as the function for `sha` (40 hex chars). 0 on success,
/// else -1 with a malloc'ed error text in *error.
int dfly_lua_load(dfly_lua *lua, const char *sha, const char *body, size_t length, char **error);
/// Whether the function for `sha` is loaded here.
int dfly_lua_has(dfly_lua *lua, const char *sha);
/// The interpreter's Lua heap in bytes (INFO used_memory_lua).
size_t dfly_lua_memory(dfly_lua *lua);
/// Forgets every loaded script (SCRIPT FLUSH).
void dfly_lua_flush(dfly_lua *lua);

/// Runs the function for `sha` with KEYS and ARGV; the result, converted by
/// Redis's rules, is RESP-encoded for a client speaking `client_resp` into
/// *out (malloc'ed). Returns 0, or -1 when the script is not loaded.
int dfly_lua_run(dfly_lua *lua, const char *sha,
                 int key_count, const char **keys, const size_t *key_lengths,
                 int arg_count, const char **args, const size_t *arg_lengths,
                 int client_resp, dfly_lua_call_fn call, void *context,
                 char **out, size_t *out_length);

/// SHA1 of `data` as 40 lower-case hex characters plus a NUL.
void dfly_sha1_hex(const void *data, size_t length, char out[41]);

#include "CLuaFunctions.h"

#endif
