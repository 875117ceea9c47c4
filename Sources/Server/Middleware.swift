import Foundation
import Hummingbird
import Prometheus

/// With a token configured, every mutating call (POST, PUT, PATCH, DELETE) must carry
/// `Authorization: Bearer <token>`, and with `guardReads` every other call under `/v1/` and
/// `/metrics` too (`/healthz`, `/readyz`, `/openapi.json` and the dashboard's files stay open).
/// The token is read from that header only, never from the query string. Compared in constant
/// time; never logged.
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]
    var guardReads = false

    func needsToken(_ request: Request) -> Bool {
        if [.post, .put, .patch, .delete].contains(request.method) { return true }
        guard guardReads else { return false }
        let path = request.uri.path
        return path.hasPrefix("/v1/") || path == "/v1" || path == "/metrics"
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard needsToken(request) else { return try await next(request, context) }
        let header = request.headers[.authorization] ?? ""
        let given = header.hasPrefix("Bearer ") ? Array(header.utf8.dropFirst(7)) : []
        guard Self.constantTimeEqual(given, token) else {
            var e = APIError(.unauthorized, "Unauthorized",
                             header.isEmpty ? "this server needs 'Authorization: Bearer <token>'\(guardReads ? "" : " for changes")" : "the bearer token is wrong")
            e.headers[.wwwAuthenticate] = "Bearer"
            return e.response()
        }
        return try await next(request, context)
    }

    /// Time depends only on the lengths, never on where the bytes differ.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return diff == 0
    }
}

/// Request latency per route, method and status class, into the Prometheus registry.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let registry: PrometheusCollectorRegistry
    static var buckets: [Duration] { [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                                      .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5),
                                      .seconds(5), .seconds(10)] }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response = try await next(request, context)
        // Streams (SSE) live for minutes: their latency says nothing about the server.
        if response.headers[.contentType] != "text/event-stream" {
            let route = context.endpointPath ?? "unmatched"
            let histogram = registry.makeDurationHistogram(
                descriptor: MetricNameDescriptor(namespace: "mimserve", metricName: "http_request_duration", unitName: "seconds",
                                                 helpText: "HTTP request latency by route, method and status"),
                labels: [("route", route), ("method", request.method.rawValue), ("status", String(response.status.code))],
                buckets: Self.buckets)
            histogram.record(ContinuousClock.now - start)
        }
        return response
    }
}
