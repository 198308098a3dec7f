#ifndef CZLIB_H
#define CZLIB_H

/// zlib for DamselflyJobs: Sidekiq stores `error_backtrace` as Base64 of
/// `Zlib::Deflate.deflate(json)`, and Foundation on Linux offers no deflate.
/// Kept in its own target so only the jobs library links libz.

#include <stddef.h>

/// Upper bound of the deflated size of `length` bytes.
size_t dfly_zlib_bound(size_t length);

/// Deflates `length` bytes into `out` (capacity `capacity`) in the zlib format at the
/// default level, byte for byte what Ruby's `Zlib::Deflate.deflate(s)` writes.
/// Returns the compressed length, or -1 on error.
long dfly_zlib_deflate(const void *data, size_t length, void *out, size_t capacity);

/// Inflates zlib-format `data` into `out`; returns the inflated length, or -1 when the
/// data is invalid or does not fit in `capacity`.
long dfly_zlib_inflate(const void *data, size_t length, void *out, size_t capacity);

#endif
