#ifndef DFLY_LUA_LIBS_H
#define DFLY_LUA_LIBS_H

/// The script libraries Redis bundles that Debian has no Lua 5.1 package
/// for; each sets its global table (`cmsgpack`, `struct`) in L.
#include <lua5.1/lua.h>

void dfly_open_cmsgpack(lua_State *L);
void dfly_open_struct(lua_State *L);

#endif
