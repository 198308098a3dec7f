#include "bridge_internal.h"
#include <lua5.1/lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>
#include <time.h>

/* Registry slots of a function engine. */
#define ENV "__dfly_fn_env"          /* the globals every library chunk (and its closures) sees */
#define ENV_META "__dfly_fn_envmeta" /* its metatable: __index is the sandbox, or the load API while loading */
#define LOAD_API "__dfly_fn_api"     /* what a library may reach while it loads */
#define LIBRARIES "__dfly_fn_libs"   /* library name -> { function name -> callback } */
#define LOADING "__dfly_fn_loading"  /* function name -> { fn, description, flags } while a library loads */

struct dfly_fn_engine {
    dfly_lua *lua;
    unsigned calls; /* for pacing the incremental GC */
};

dfly_lua *dfly_fn_interpreter(dfly_fn_engine *engine) { return engine->lua; }

/* ---------- errors as Redis 7.0 raises them: tables {err=...} ---------- */

static int raise_error(lua_State *L, const char *message) {
    lua_newtable(L);
    lua_pushfstring(L, "ERR %s", message);
    lua_setfield(L, -2, "err");
    return lua_error(L);
}

static int readonly_table(lua_State *L) {
    return luaL_error(L, "Attempt to modify a readonly table");
}

static int nonexistent_global(lua_State *L) {
    const char *name = lua_tostring(L, 2);
    return luaL_error(L, "Script attempted to access nonexistent global variable '%s'", name ? name : "?");
}

/* ---------- redis.register_function (load time only) ---------- */

static int valid_name(const char *s, size_t n) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '_') return 0;
    }
    return 1;
}

static const char *flag_names[] = { "no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys" };

/* Reads the flags table at `index`; -1 on an unknown flag. */
static int read_flags(lua_State *L, int index, unsigned *flags) {
    for (int i = 1;; i++) {
        lua_rawgeti(L, index, i);
        if (lua_isnil(L, -1)) { lua_pop(L, 1); return 0; }
        if (!lua_isstring(L, -1)) { lua_pop(L, 1); return -1; }
        const char *name = lua_tostring(L, -1);
        int known = 0;
        for (unsigned f = 0; f < sizeof(flag_names) / sizeof(flag_names[0]); f++) {
            if (strcmp(name, flag_names[f]) == 0) { *flags |= 1u << f; known = 1; }
        }
        lua_pop(L, 1);
        if (!known) return -1;
    }
}

static int register_function(lua_State *L) {
    int argc = lua_gettop(L);
    if (argc < 1 || argc > 2) return raise_error(L, "wrong number of arguments to redis.register_function");
    int name_index = 0, callback_index = 0, description_index = 0;
    unsigned flags = 0;
    if (argc == 1) {
        if (!lua_istable(L, 1)) {
            return raise_error(L, "calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).");
        }
        /* Slots 2, 3, 4: the name, description and callback found so far. */
        lua_settop(L, 4);
        lua_pushnil(L);
        while (lua_next(L, 1)) {
            if (lua_type(L, -2) != LUA_TSTRING && lua_type(L, -2) != LUA_TNUMBER) {
                return raise_error(L, "named argument key given to redis.register_function is not a string");
            }
            /* A copy: lua_tostring on a numeric key would confuse lua_next. */
            lua_pushvalue(L, -2);
            const char *key = lua_tostring(L, -1);
            lua_pop(L, 1);
            int slot = 0;
            if (strcasecmp(key, "function_name") == 0) {
                if (!lua_isstring(L, -1)) return raise_error(L, "function_name argument given to redis.register_function must be a string");
                slot = 2;
            } else if (strcasecmp(key, "description") == 0) {
                if (!lua_isstring(L, -1)) return raise_error(L, "description argument given to redis.register_function must be a string");
                slot = 3;
            } else if (strcasecmp(key, "callback") == 0) {
                if (!lua_isfunction(L, -1)) return raise_error(L, "callback argument given to redis.register_function must be a function");
                slot = 4;
            } else if (strcasecmp(key, "flags") == 0) {
                if (!lua_istable(L, -1)) return raise_error(L, "flags argument to redis.register_function must be a table representing function flags");
                if (read_flags(L, lua_gettop(L), &flags) != 0) return raise_error(L, "unknown flag given");
            } else {
                return raise_error(L, "unknown argument given to redis.register_function");
            }
            if (slot) lua_replace(L, slot);
            else lua_pop(L, 1);
        }
        if (lua_isnil(L, 2)) return raise_error(L, "redis.register_function must get a function name argument");
        if (lua_isnil(L, 4)) return raise_error(L, "redis.register_function must get a callback argument");
        name_index = 2;
        callback_index = 4;
        if (!lua_isnil(L, 3)) description_index = 3;
    } else {
        if (!lua_isstring(L, 1)) return raise_error(L, "first argument to redis.register_function must be a string");
        if (!lua_isfunction(L, 2)) return raise_error(L, "second argument to redis.register_function must be a function");
        name_index = 1;
        callback_index = 2;
    }
    size_t name_length;
    lua_pushvalue(L, name_index);
    const char *name = lua_tolstring(L, -1, &name_length);
    lua_pop(L, 1);
    if (!valid_name(name, name_length)) {
        /* Redis 7.0 reports function names with the library-name text. */
        return raise_error(L, "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long");
    }
    lua_getfield(L, LUA_REGISTRYINDEX, LOADING);
    int loading = lua_gettop(L);
    if (!lua_istable(L, loading)) return raise_error(L, "redis.register_function can only be called on FUNCTION LOAD command");
    lua_pushlstring(L, name, name_length);
    lua_rawget(L, loading);
    if (!lua_isnil(L, -1)) return raise_error(L, "Function already exists in the library");
    lua_pop(L, 1);
    lua_pushlstring(L, name, name_length);
    lua_newtable(L);
    lua_pushvalue(L, callback_index);
    lua_setfield(L, -2, "fn");
    if (description_index) {
        lua_pushvalue(L, description_index);
        lua_setfield(L, -2, "description");
    }
    lua_pushnumber(L, flags);
    lua_setfield(L, -2, "flags");
    lua_rawset(L, loading);
    return 0;
}

/* ---------- the load time limit ---------- */

/* Redis 7.0 stops a library's load after 500 ms (a loop at load would
 * otherwise hold the thread forever). Loads run on one thread at a time per
 * engine and engines are per thread, so the start time is thread-local. */
static __thread struct timespec load_started;
#define LOAD_LIMIT_MS 500

static void load_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long elapsed = (now.tv_sec - load_started.tv_sec) * 1000LL + (now.tv_nsec - load_started.tv_nsec) / 1000000;
    if (elapsed > LOAD_LIMIT_MS) raise_error(L, "FUNCTION LOAD timeout");
}

/* ---------- the engine ---------- */

/* A table whose reads of missing names and whose writes raise Redis's errors. */
static void lock_table(lua_State *L, int index) {
    lua_newtable(L);
    lua_pushcfunction(L, nonexistent_global);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, readonly_table);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, index < 0 ? index - 1 : index);
}

dfly_fn_engine *dfly_fn_create(void) {
    dfly_fn_engine *engine = calloc(1, sizeof(*engine));
    engine->lua = dfly_lua_create();
    lua_State *L = dfly_bridge_state(engine->lua);

    /* The load-time API: redis.register_function, redis.log and constants. */
    lua_newtable(L); /* api */
    lua_newtable(L); /* api.redis */
    lua_pushcfunction(L, register_function);
    lua_setfield(L, -2, "register_function");
    lua_getglobal(L, "redis");
    static const char *copied[] = { "log", "LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING", "REDIS_VERSION", "REDIS_VERSION_NUM" };
    for (unsigned i = 0; i < sizeof(copied) / sizeof(copied[0]); i++) {
        lua_getfield(L, -1, copied[i]);
        lua_setfield(L, -3, copied[i]);
    }
    lua_pop(L, 1); /* the runtime redis */
    lock_table(L, -1);
    lua_setfield(L, -2, "redis");
    lock_table(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, LOAD_API);

    /* The environment of library code: empty and read-only; its metatable
     * forwards reads to the sandbox's globals (or to the load API). */
    lua_newtable(L); /* env */
    lua_newtable(L); /* meta */
    lua_pushvalue(L, LUA_GLOBALSINDEX);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, readonly_table);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, ENV_META);
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, ENV);

    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, LIBRARIES);
    return engine;
}

void dfly_fn_destroy(dfly_fn_engine *engine) {
    dfly_lua_destroy(engine->lua);
    free(engine);
}

static void set_env_index(lua_State *L, const char *source) {
    lua_getfield(L, LUA_REGISTRYINDEX, ENV_META);
    if (source) lua_getfield(L, LUA_REGISTRYINDEX, source);
    else lua_pushvalue(L, LUA_GLOBALSINDEX);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

static char *copy_message(const char *prefix, const char *message, size_t length) {
    size_t p = strlen(prefix);
    char *out = malloc(p + length + 1);
    memcpy(out, prefix, p);
    memcpy(out + p, message, length);
    out[p + length] = 0;
    return out;
}

int dfly_fn_load(dfly_fn_engine *engine, const char *library, const char *code, size_t length,
                 dfly_fn_registered_fn registered, void *context, char **error) {
    lua_State *L = dfly_bridge_state(engine->lua);
    int top = lua_gettop(L);
    lua_pushcfunction(L, dfly_bridge_error_handler);
    int handler = lua_gettop(L);
    if (luaL_loadbuffer(L, code, length, "@user_function") != 0) {
        size_t n;
        const char *message = lua_tolstring(L, -1, &n);
        *error = copy_message("Error compiling function: ", message ? message : "", message ? n : 0);
        lua_settop(L, top);
        return -1;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, ENV);
    lua_setfenv(L, -2);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, LOADING);
    set_env_index(L, LOAD_API);
    /* Our hook for the load; whatever hook the interpreter had comes back after. */
    lua_Hook previous_hook = lua_gethook(L);
    int previous_mask = lua_gethookmask(L), previous_count = lua_gethookcount(L);
    clock_gettime(CLOCK_MONOTONIC, &load_started);
    lua_sethook(L, load_hook, LUA_MASKCOUNT, 100000);
    int rc = lua_pcall(L, 0, 0, handler);
    lua_sethook(L, previous_hook, previous_mask, previous_count);
    set_env_index(L, NULL);
    lua_getfield(L, LUA_REGISTRYINDEX, LOADING);
    int loading = lua_gettop(L);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, LOADING);
    if (rc != 0) {
        /* The handler left {err=...} below the loading table. */
        lua_getfield(L, loading - 1, "err");
        size_t n = 0;
        const char *message = lua_tolstring(L, -1, &n);
        *error = copy_message("Error registering functions: ", message ? message : "", message ? n : 0);
        lua_settop(L, top);
        return -1;
    }
    int count = 0;
    lua_pushnil(L);
    while (lua_next(L, loading)) { count++; lua_pop(L, 1); }
    if (count == 0) {
        *error = copy_message("No functions registered", "", 0);
        lua_settop(L, top);
        return -1;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, LIBRARIES);
    lua_newtable(L);
    int functions = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, loading)) {
        size_t name_length, description_length = 0;
        lua_pushvalue(L, -2);
        const char *name = lua_tolstring(L, -1, &name_length);
        lua_getfield(L, -2, "fn");
        lua_setfield(L, functions, name);
        lua_getfield(L, -2, "description");
        const char *description = lua_isnil(L, -1) ? NULL : lua_tolstring(L, -1, &description_length);
        lua_getfield(L, -3, "flags");
        unsigned flags = (unsigned)lua_tonumber(L, -1);
        if (registered) registered(context, name, name_length, description, description_length, flags);
        lua_pop(L, 4);
    }
    lua_setfield(L, -2, library);
    lua_settop(L, top);
    return 0;
}

static void push_array(lua_State *L, int count, const char **items, const size_t *lengths) {
    lua_createtable(L, count, 0);
    for (int i = 0; i < count; i++) {
        lua_pushlstring(L, items[i], lengths[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* Appends "-<message>\r\n" with CR and LF made spaces, as error lines must be. */
static void append_error(char **out, size_t *length, const char *message, size_t n) {
    char *b = realloc(*out, *length + n + 4);
    b[(*length)++] = '-';
    for (size_t i = 0; i < n; i++) {
        char c = message[i];
        b[(*length)++] = (c == '\r' || c == '\n') ? ' ' : c;
    }
    b[(*length)++] = '\r';
    b[(*length)++] = '\n';
    *out = b;
}

int dfly_fn_call(dfly_fn_engine *engine, const char *library, const char *name,
                 int key_count, const char **keys, const size_t *key_lengths,
                 int arg_count, const char **args, const size_t *arg_lengths,
                 int client_resp, dfly_lua_call_fn call, void *context,
                 char **out, size_t *out_length) {
    lua_State *L = dfly_bridge_state(engine->lua);
    int top = lua_gettop(L);
    lua_pushcfunction(L, dfly_bridge_error_handler);
    int handler = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, LIBRARIES);
    lua_getfield(L, -1, library);
    if (!lua_istable(L, -1)) { lua_settop(L, top); return -1; }
    lua_getfield(L, -1, name);
    if (!lua_isfunction(L, -1)) { lua_settop(L, top); return -1; }
    push_array(L, key_count, keys, key_lengths);
    push_array(L, arg_count, args, arg_lengths);
    void *run = dfly_bridge_begin_run(L, call, context);
    char *result = NULL;
    size_t result_length = 0;
    if (lua_pcall(L, 2, 1, handler) != 0) {
        int error = lua_gettop(L);
        dfly_bridge_is_precounted(L, error);
        lua_getfield(L, error, "err");
        size_t n = 0;
        const char *message = lua_tolstring(L, -1, &n);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addlstring(&b, message ? message : "", message ? n : 0);
        lua_getfield(L, error, "source");
        lua_getfield(L, error, "line");
        if (lua_isstring(L, -2) && lua_isnumber(L, -1)) {
            char line[32];
            snprintf(line, sizeof(line), "%d", (int)lua_tointeger(L, -1));
            const char *source = lua_tostring(L, -2);
            lua_pop(L, 2);
            luaL_addstring(&b, " script: ");
            luaL_addstring(&b, name);
            luaL_addstring(&b, ", on ");
            luaL_addstring(&b, source);
            luaL_addstring(&b, ":");
            luaL_addstring(&b, line);
            luaL_addstring(&b, ".");
        } else {
            lua_pop(L, 2);
        }
        luaL_pushresult(&b);
        const char *text = lua_tolstring(L, -1, &n);
        append_error(&result, &result_length, text, n);
    } else {
        dfly_bridge_encode(L, -1, client_resp, &result, &result_length);
    }
    dfly_bridge_end_run(L, run);
    lua_settop(L, top);
    /* An incremental GC step every 50 calls, as EVAL paces it (Redis's rate). */
    if (++engine->calls % 50 == 0) lua_gc(L, LUA_GCSTEP, 10);
    *out = result;
    *out_length = result_length;
    return 0;
}

size_t dfly_fn_memory(dfly_fn_engine *engine) {
    lua_State *L = dfly_bridge_state(engine->lua);
    return (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
}
