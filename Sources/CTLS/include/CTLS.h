#ifndef DAMSELFLY_CTLS_H
#define DAMSELFLY_CTLS_H

#include <stddef.h>

/// TLS for Damselfly's connections, over OpenSSL with memory BIOs: the event
/// loops keep doing the socket I/O (io_uring or epoll) and hand ciphertext in
/// and out; OpenSSL never touches a file descriptor.

typedef struct dfly_tls_ctx dfly_tls_ctx;
typedef struct dfly_tls dfly_tls;

/// Client certificates: 0 = not asked for, 1 = required (Redis's default,
/// `tls-auth-clients yes`), 2 = asked for and verified when given (`optional`).
/// `protocols`: Redis's `tls-protocols` ("TLSv1.2 TLSv1.3"; NULL or "" = OpenSSL's
/// defaults from TLSv1.2 on). NULL or "" leaves ca / ciphers / ciphersuites unset.
/// Returns NULL with a message in `error` on failure.
/// `key_pass` decrypts an encrypted key file (NULL or "": none); `prefer_server`
/// picks the server's cipher order (Redis's `tls-prefer-server-ciphers`).
dfly_tls_ctx *dfly_tls_ctx_new(const char *cert_file, const char *key_file, const char *key_pass,
                               const char *ca_file, const char *ca_dir, int auth_clients,
                               const char *protocols, const char *ciphers, const char *ciphersuites,
                               int prefer_server, char *error, size_t error_len);
void dfly_tls_ctx_free(dfly_tls_ctx *ctx);

/// A client context: `ca_file` / `ca_dir` verify the server (NULL or "" with
/// `verify` 1: the system's CAs); `cert_file` and `key_file` (both or neither) are
/// the client's certificate. `verify` 0 skips the server's verification.
dfly_tls_ctx *dfly_tls_client_ctx_new(const char *ca_file, const char *ca_dir, const char *cert_file,
                                      const char *key_file, int verify, char *error, size_t error_len);

/// A server-side session on `ctx`.
dfly_tls *dfly_tls_new(dfly_tls_ctx *ctx);
/// A client-side session on a client context, for `host` (SNI, and the name or
/// IP address the server's certificate must carry when verifying).
dfly_tls *dfly_tls_new_client(dfly_tls_ctx *ctx, const char *host);
void dfly_tls_free(dfly_tls *tls);

/// Ciphertext that arrived from the peer.
int dfly_tls_feed(dfly_tls *tls, const void *data, size_t len);
/// Plaintext read (and the handshake driven): > 0 bytes, 0 = needs more
/// ciphertext, -1 = the session failed (bad handshake, alert, close_notify).
int dfly_tls_read(dfly_tls *tls, void *buf, size_t cap);
/// Plaintext to send: the bytes taken (all of them once the handshake is
/// done), 0 = not yet (handshake still running), -1 = failed.
int dfly_tls_write(dfly_tls *tls, const void *data, size_t len);
/// An upper bound on the plaintext `dfly_tls_read` can return now: the
/// decrypted bytes OpenSSL holds plus the ciphertext fed and not yet read.
size_t dfly_tls_readable(dfly_tls *tls);
/// Ciphertext waiting to go to the peer, and taking it.
size_t dfly_tls_pending(dfly_tls *tls);
size_t dfly_tls_take(dfly_tls *tls, void *buf, size_t cap);
/// Whether the handshake finished; the protocol and cipher then (static strings).
int dfly_tls_established(dfly_tls *tls);
const char *dfly_tls_version(dfly_tls *tls);
const char *dfly_tls_cipher(dfly_tls *tls);

#endif
