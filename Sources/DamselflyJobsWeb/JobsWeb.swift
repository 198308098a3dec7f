import DamselflyJobs
import Glibc
import Hummingbird
import Mustache

/// Sidekiq Web's pages over a Redis (or Damselfly) that Sidekiq-compatible workers use:
/// Dashboard, Busy, Queues, Retries, Scheduled and Dead, reading and moving jobs exactly as
/// Sidekiq's own Web UI does, so it serves a Ruby Sidekiq's data as well as ours.
///
/// Standalone: ``JobsWeb/run(host:port:redis:)`` (what `damselfly-jobs web` calls). Inside
/// another Hummingbird application, mount the routes under a path:
///
/// ```swift
/// let web = try JobsWeb(redis: RedisPool(config: config, limit: 4), mountPath: "/jobs")
/// web.addRoutes(to: router)   // GET /jobs, /jobs/busy, /jobs/retries, ...
/// ```
///
/// Every POST checks a CSRF token (``CSRFToken``); every page is rendered from escaping
/// Mustache templates (``Templates``).
public struct JobsWeb: Sendable {
    public let redis: RedisPool
    /// Where the routes are mounted, `/` or `/prefix` (no trailing slash).
    public let mountPath: String
    /// Seconds between the summary's live refreshes; 0 turns them off.
    public var pollInterval: Int
    let library: MustacheLibrary
    var data: SidekiqData { SidekiqData(redis: redis) }

    public init(redis: RedisPool, mountPath: String = "/", pollInterval: Int = 5) throws {
        self.redis = redis
        var path = mountPath
        while path.hasSuffix("/") { path.removeLast() }
        if !path.isEmpty && !path.hasPrefix("/") { path = "/" + path }
        self.mountPath = path.isEmpty ? "/" : path
        self.pollInterval = pollInterval
        self.library = try Templates.library()
    }

    /// The prefix links are built on, always ending in `/`.
    var root: String { mountPath == "/" ? "/" : mountPath + "/" }

    /// Serves the dashboard on `host:port` until the task is cancelled or the process ends.
    public static func run(host: String, port: Int, redis: RedisConfig, pollInterval: Int = 5) async throws {
        let web = try JobsWeb(redis: RedisPool(config: redis, limit: 8), pollInterval: pollInterval)
        let router = Router()
        web.addRoutes(to: router)
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "damselfly-jobs"))
        try await app.runService()
    }

    /// Adds every route under ``mountPath`` to `router`.
    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.addRoutes(routes(context: Context.self), atPath: mountPath == "/" ? "" : RouterPath(mountPath))
    }

    /// The routes as a collection, relative to ``mountPath``.
    public func routes<Context: RequestContext>(context: Context.Type = BasicRequestContext.self) -> RouteCollection<Context> {
        let routes = RouteCollection(context: Context.self)
        let web = self
        routes.get("/") { request, _ in try await web.page(request) { try await web.dashboard($0, $1) } }
        routes.get("stats") { _, _ in try await web.statsJSON() }
        routes.get("assets/app.css") { _, _ in JobsWeb.asset(Templates.css, type: "text/css; charset=utf-8") }
        routes.get("assets/app.js") { _, _ in JobsWeb.asset(Templates.js, type: "text/javascript; charset=utf-8") }
        routes.get("busy") { request, _ in try await web.page(request) { try await web.busy($0, $1) } }
        routes.post("busy") { request, context in
            try await web.form(request, context) { form in
                let stop = form["stop"] != nil, quiet = form["quiet"] != nil
                var targets: [String] = []
                if let identity = form["identity"] {
                    targets = [identity]
                } else {
                    targets = try await JobStats.read(redis: web.redis).processes.map(\.identity)
                }
                for identity in targets {
                    if quiet { try await web.data.signal(identity, "TSTP") }
                    if stop { try await web.data.signal(identity, "TERM") }
                }
                return "busy"
            }
        }
        routes.get("queues") { request, _ in try await web.page(request) { try await web.queues($0, $1) } }
        routes.get("queues/:name") { request, context in
            let name = try JobsWeb.queueName(context)
            return try await web.page(request) { try await web.queue(name, $0, $1) }
        }
        routes.post("queues/:name") { request, context in
            let name = try JobsWeb.queueName(context)
            return try await web.form(request, context) { _ in
                try await web.data.clearQueue(name)
                return "queues"
            }
        }
        routes.post("queues/:name/delete") { request, context in
            let name = try JobsWeb.queueName(context)
            return try await web.form(request, context) { form in
                if let value = form["key_val"] { try await web.data.deleteFromQueue(name, value: value) }
                return "queues/" + FormData.encode(name)
            }
        }
        for set in JobSet.all {
            routes.get(RouterPath(set.path)) { request, _ in try await web.page(request) { try await web.jobSet(set, $0, $1) } }
            routes.post(RouterPath(set.path)) { request, context in
                try await web.form(request, context) { form in
                    for key in form.all("key") {
                        if let entry = try await web.data.fetch(set.key, key: key) { try await web.act(set, form, entry) }
                    }
                    return set.path
                }
            }
            for action in set.allActions {
                routes.post(RouterPath(set.path + "/all/" + action.name)) { request, context in
                    try await web.form(request, context) { _ in
                        try await web.actOnAll(set, action.name)
                        return set.path
                    }
                }
            }
            routes.post(RouterPath(set.path + "/:key")) { request, context in
                let key = context.parameters.get("key") ?? ""
                return try await web.form(request, context) { form in
                    if let entry = try await web.data.fetch(set.key, key: key) { try await web.act(set, form, entry) }
                    return set.path
                }
            }
        }
        return routes
    }

    // MARK: - Request plumbing

    /// Sidekiq's queue-name rule (`QUEUE_NAME`): anything else is not a queue page.
    static func queueName<Context: RequestContext>(_ context: Context) throws -> String {
        guard let name = context.parameters.get("name"), !name.isEmpty,
              name.utf8.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ":")
                  || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") })
        else { throw HTTPError(.notFound) }
        return name
    }

    static func isAlnum(_ b: UInt8) -> Bool {
        (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122)
    }

    /// The session's CSRF token from its cookie, or a new one (then set on the response).
    func session(_ request: Request) -> (token: [UInt8], isNew: Bool) {
        if let value = request.cookies[CSRFToken.cookieName]?.value, let token = CSRFToken.unhex(value), token.count == CSRFToken.length {
            return (token, false)
        }
        return (CSRFToken.generate(), true)
    }

    func withSession(_ response: Response, _ session: (token: [UInt8], isNew: Bool)) -> Response {
        guard session.isNew else { return response }
        var response = response
        response.setCookie(Cookie(name: CSRFToken.cookieName, value: CSRFToken.hex(session.token), path: mountPath,
                                  httpOnly: true, sameSite: .strict))
        return response
    }

    /// Renders a GET page; `build` gets the query and the page's masked CSRF token.
    func page(_ request: Request, _ build: (FormData, String) async throws -> String) async throws -> Response {
        let session = session(request)
        let html = try await build(FormData(request.uri.query), CSRFToken.masked(session.token))
        var headers = JobsWeb.securityHeaders
        headers[.contentType] = "text/html; charset=utf-8"
        return withSession(Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html))), session)
    }

    /// A POST form: refused with 403 unless its token matches the session's; otherwise runs
    /// `action` and redirects (303) to the page it names, keeping `page`/`substr` as Sidekiq does.
    func form<Context: RequestContext>(_ request: Request, _ context: Context, _ action: (FormData) async throws -> String) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: 4 << 20)
        let form = FormData(body.getString(at: body.readerIndex, length: body.readableBytes))
        guard let cookie = request.cookies[CSRFToken.cookieName]?.value, let token = CSRFToken.unhex(cookie),
              let field = form[CSRFToken.fieldName], CSRFToken.verify(field: field, token: token)
        else {
            return Response(status: .forbidden, headers: [.contentType: "text/plain; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: "Forbidden: missing or wrong CSRF token\n")))
        }
        let target = try await action(form)
        let query = FormData(request.uri.query).pairs.filter { ["page", "substr", "direction", "count"].contains($0.0) }
            .map { "\($0.0)=\(FormData.encode($0.1))" }.joined(separator: "&")
        return Response.redirect(to: root + target + (query.isEmpty ? "" : "?" + query), type: .normal)
    }

    static let securityHeaders: HTTPFields = [
        .cacheControl: "private, no-store",
        .contentSecurityPolicy: "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            + "form-action 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'",
        .init("X-Content-Type-Options")!: "nosniff",
        .init("X-Frame-Options")!: "DENY",
        .init("Referrer-Policy")!: "same-origin",
    ]

    static func asset(_ text: String, type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type, .cacheControl: "public, max-age=3600"],
                 body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    func render(_ template: String, _ context: [String: Any]) throws -> String {
        guard let html = library.render(context, withTemplate: template) else { throw HTTPError(.internalServerError) }
        return html
    }
}
