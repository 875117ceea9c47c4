import Config
import Foundation
import Hummingbird
import Models
import Store
import Trainer

/// An error a client can act on, sent as `application/problem+json` (RFC 9457).
public struct APIError: Error, Sendable {
    public var status: HTTPResponse.Status
    public var title: String
    public var detail: String
    /// Per-field problems (422).
    public var fields: [FieldError] = []
    public var headers: HTTPFields = [:]
    /// More members of the problem object (for example `error_id` on a 500).
    public var extra: [String: String] = [:]

    public init(_ status: HTTPResponse.Status, _ title: String, _ detail: String, fields: [FieldError] = []) {
        self.status = status
        self.title = title
        self.detail = detail
        self.fields = fields
    }

    static func notFound(_ what: String) -> APIError { APIError(.notFound, "Not found", "\(what) not found") }
    static func badRequest(_ detail: String) -> APIError { APIError(.badRequest, "Bad request", detail) }
    static func invalid(_ fields: [FieldError]) -> APIError {
        APIError(.unprocessableContent, "Invalid request", fields.map(\.description).joined(separator: "; "), fields: fields)
    }
    static func invalid(_ field: String, _ reason: String) -> APIError { invalid([FieldError(field, reason)]) }

    func response() -> Response {
        var body: [String: Any] = ["type": "about:blank", "title": title, "status": Int(status.code), "detail": detail]
        if !fields.isEmpty { body["errors"] = fields.map { ["field": $0.field, "reason": $0.reason] } }
        for (k, v) in extra { body[k] = v }
        let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data()
        var h = headers
        h[.contentType] = "application/problem+json"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension APIError {
    /// Maps the lower layers' errors to HTTP.
    static func from(_ error: any Error) -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as StoreError:
            switch e {
            case .notFound(let what): return .notFound(what)
            case .illegalTransition: return APIError(.conflict, "Illegal state change", e.description)
            case .idempotencyConflict: return APIError(.unprocessableContent, "Idempotency-Key reused", e.description,
                                                       fields: [FieldError("Idempotency-Key", e.description)])
            case .conflict: return APIError(.conflict, "Conflict", e.description)
            case .badPageToken: return .invalid("page_token", e.description)
            case .queueFull:
                var a = APIError(.tooManyRequests, "Queue full", e.description)
                a.headers[.retryAfter] = "30"
                return a
            default: return APIError(.internalServerError, "Database error", e.description)
            }
        case let e as ConfigError: return .invalid(e.errors)
        case let e as InferenceError:
            switch e {
            case .notFound: return .notFound(e.description.replacingOccurrences(of: " not found", with: ""))
            case .noCheckpoint: return APIError(.conflict, "No checkpoint yet", e.description)
            case .badImage: return APIError(.unprocessableContent, "Unreadable image", e.description, fields: [FieldError("body", e.description)])
            case .imageTooLarge: return APIError(.unprocessableContent, "Image too large", e.description, fields: [FieldError("body", e.description)])
            case .badParameter(let f, let m): return .invalid(f, m)
            case .notApplicable: return APIError(.conflict, "Not applicable to this job", e.description)
            case .busy:
                var a = APIError(.serviceUnavailable, "Busy", e.description)
                a.headers[.retryAfter] = "2"
                return a
            case .internalFailure: return APIError(.internalServerError, "Inference failed", e.description)
            }
        case let e as HTTPError:
            if e.status == .contentTooLarge {
                return APIError(.contentTooLarge, "Body too large", "the request body exceeds the server's limit (--max-body-bytes)")
            }
            return APIError(e.status, e.status.reasonPhrase, e.body ?? e.status.reasonPhrase)
        default:
            return APIError(.internalServerError, "Internal error", "\(error)")
        }
    }
}

/// Turns every thrown error into problem+json; unknown routes get a 404 of the same shape.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            var api = APIError.from(error)
            if api.status.code >= 500 && api.status != .serviceUnavailable {
                // What failed inside (SQL, file paths, library messages) goes to the log only,
                // under an id the client gets too, so an operator can find the line.
                let id = String(UInt64.random(in: 0..<(1 << 48)), radix: 16)
                context.logger.error("error \(id): \(request.method) \(request.uri.path): \(api.detail)")
                api.detail = "internal error \(id); the server log has the details under this id"
                api.fields = []
                api.extra["error_id"] = id
            }
            return api.response()
        }
    }
}
