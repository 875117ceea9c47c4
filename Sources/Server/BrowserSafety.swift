import Config
import Foundation
import Hummingbird
import Models
import Synchronization

/// The names a request's `Host` (and a mutating request's `Origin`) may carry: a web page on
/// another site that re-points its own DNS name at 127.0.0.1 (DNS rebinding) reaches the server
/// with its own name as Host, and is refused.
final class HostAllowList: Sendable {
    /// Allowed without a port or with the listening port.
    let localNames: Set<String>
    /// `--allowed-host` entries: name → allowed ports (empty: any port).
    let extra: [String: Set<Int>]
    let allowAny: Bool
    /// Known once the server is bound (the configured port may be 0).
    let listeningPort = Atomic<Int>(-1)

    init(boundHost: String, extra entries: [String]) {
        var names: Set<String> = ["localhost", "127.0.0.1", "[::1]"]
        let bound = boundHost.lowercased()
        names.insert(bound.contains(":") && !bound.hasPrefix("[") ? "[\(bound)]" : bound)
        localNames = names
        var extra: [String: Set<Int>] = [:]
        var any = false
        for entry in entries {
            if entry == "*" { any = true; continue }
            guard let (name, port) = Self.split(entry) else { continue }
            if let port, extra[name]?.isEmpty != true { extra[name, default: []].insert(port) } else { extra[name] = [] }
        }
        self.extra = extra
        allowAny = any
    }

    /// `name[:port]` (IPv6 in brackets) → lower-cased name and port; nil when malformed.
    static func split(_ authority: String) -> (String, Int?)? {
        let a = authority.lowercased()
        if a.hasPrefix("[") {
            guard let close = a.firstIndex(of: "]") else { return nil }
            let name = String(a[...close])
            let rest = a[a.index(after: close)...]
            if rest.isEmpty { return (name, nil) }
            guard rest.hasPrefix(":"), let port = Int(rest.dropFirst()), (0...65535).contains(port) else { return nil }
            return (name, port)
        }
        let parts = a.split(separator: ":", omittingEmptySubsequences: false)
        guard !parts.isEmpty, !parts[0].isEmpty, parts.count <= 2 else { return nil }
        let name = parts[0].hasSuffix(".") ? String(parts[0].dropLast()) : String(parts[0])
        if parts.count == 1 { return (name, nil) }
        guard let port = Int(parts[1]), (0...65535).contains(port) else { return nil }
        return (name, port)
    }

    func allows(_ authority: String) -> Bool {
        if allowAny { return true }
        guard let (name, port) = Self.split(authority) else { return false }
        if localNames.contains(name) { return port == nil || port == listeningPort.load(ordering: .relaxed) }
        guard let ports = extra[name] else { return false }
        return ports.isEmpty || port.map(ports.contains) == true
    }

    /// An `Origin` header value (`scheme://host[:port]`) whose host is allowed.
    func allowsOrigin(_ origin: String) -> Bool {
        if allowAny { return true }
        for scheme in ["http://", "https://"] where origin.lowercased().hasPrefix(scheme) {
            let authority = origin.dropFirst(scheme.count)
            guard !authority.contains("/") else { return false }
            return allows(String(authority))
        }
        return false
    }
}

/// Refuses requests whose `Host` is not allowed (421) and mutating requests from a web page of
/// another origin (403), before any route or file is reached.
struct HostOriginMiddleware<Context: RequestContext>: RouterMiddleware {
    let hosts: HostAllowList

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let authority = request.head.authority, !authority.isEmpty else {
            return APIError(.badRequest, "Bad request", "the request has no Host header", fields: [FieldError("Host", "is required")]).response()
        }
        guard hosts.allows(authority) else {
            let reason = "'\(authority.prefix(100))' is not a name this server answers to; add it with --allowed-host"
            return APIError(.misdirectedRequest, "Misdirected request", "Host \(reason)", fields: [FieldError("Host", reason)]).response()
        }
        if [.post, .put, .patch, .delete].contains(request.method), let origin = request.headers[.origin], !hosts.allowsOrigin(origin) {
            let reason = "'\(origin.prefix(100))' may not make changes here (cross-site request)"
            return APIError(.forbidden, "Forbidden", "Origin \(reason)", fields: [FieldError("Origin", reason)]).response()
        }
        return try await next(request, context)
    }
}

extension Request {
    /// A JSON body: `Content-Type: application/json` (or `…+json`) is required, so that a web page
    /// of another site cannot send one with a plain form or a `text/plain` fetch. With
    /// `optional`, an empty body of any type is accepted (and returned empty).
    func jsonBytes(limit: Int, optional: Bool = false) async throws -> [UInt8] {
        let type = headers[.contentType]?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        if let type, type == "application/json" || (type.hasPrefix("application/") && type.hasSuffix("+json")) {
            return try await bytes(limit: limit)
        }
        if optional {
            let bytes = try await bytes(limit: limit)
            if bytes.isEmpty { return bytes }
        }
        let reason = "must be application/json (got \(type.map { "'\($0.prefix(100))'" } ?? "none"))"
        throw APIError(.unsupportedMediaType, "Unsupported media type", "Content-Type \(reason)", fields: [FieldError("Content-Type", reason)])
    }
}
