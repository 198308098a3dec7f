#ifndef CLUAFUNCTIONS_H
#define CLUAFUNCTIONS_H

/// Redis 7 functions (FUNCTION LOAD / FCALL) on Lua 5.1: one engine per
/// thread, separate from the EVAL interpreter so SCRIPT FLUSH and FUNCTION
/// FLUSH each drop only their own. Libraries run once at load in an
/// environment that offers only redis.register_function, redis.log and
/// the constants; the registered callbacks then run with the full sandbox.

#include <stddef.h>

typedef struct dfly_fn_engine dfly_fn_engine;

/// Flag bits of a registered function, in Redis's listing order.
enum {
    DFLY_FN_NO_WRITES = 1,
    DFLY_FN_ALLOW_OOM = 2,
    DFLY_FN_ALLOW_STALE = 4,
    DFLY_FN_NO_CLUSTER = 8,
    DFLY_FN_ALLOW_CROSS_SLOT_KEYS = 16,
};

/// Reports one function a library registered (description NULL when none).
typedef void (*dfly_fn_registered_fn)(void *context, const char *name, size_t name_length,
                                      const char *description, size_t description_length, unsigned flags);

dfly_fn_engine *dfly_fn_create(void);
/// The engine's interpreter, so the server can connect its count hook
/// (the --lua_time_limit / FUNCTION KILL machinery) as it does for EVAL's.
struct dfly_lua *dfly_fn_interpreter(dfly_fn_engine *engine);
void dfly_fn_destroy(dfly_fn_engine *engine);

/// Compiles and runs a library's code (everything after its shebang line,
/// starting with that line's newline so line numbers match) and keeps its
/// functions as `library`, replacing an earlier version. Reports each
/// function through `registered`. 0 on success, else -1 with a malloc'ed
/// message in *error (Redis's text, without the leading "ERR ").
int dfly_fn_load(dfly_fn_engine *engine, const char *library, const char *code, size_t length,
                 dfly_fn_registered_fn registered, void *context, char **error);

/// Runs `name` of `library` as fn(KEYS, ARGV); the reply is RESP for a
/// client speaking `client_resp`, malloc'ed in *out. -1 when not loaded.
int dfly_fn_call(dfly_fn_engine *engine, const char *library, const char *name,
                 int key_count, const char **keys, const size_t *key_lengths,
                 int arg_count, const char **args, const size_t *arg_lengths,
                 int client_resp, dfly_lua_call_fn call, void *context,
                 char **out, size_t *out_length);

/// The engine's Lua heap in bytes (INFO's used_memory_vm_functions).
size_t dfly_fn_memory(dfly_fn_engine *engine);

#endif
