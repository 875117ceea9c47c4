import Foundation
import HummingbirdCore
import Logging
import NIOCore
import HTTPTypes
import NIOHTTPTypes
import Synchronization

/// The HTTP/1 limits every connection lives under (`--header-timeout`, `--body-idle-timeout`,
/// `--idle-timeout`, `--max-connections`), and what they have done so far (for /metrics).
final class ConnectionLimits: Sendable {
    let headerTimeout: Double
    let bodyIdleTimeout: Double
    let idleTimeout: Double
    let maxConnections: Int
    /// Called once per connection when the server starts its graceful shutdown (the HTTP
    /// server tells every connection to quiesce): event streams end then, not at the deadline.
    let onQuiesce: @Sendable () -> Void

    private let open = Atomic<Int>(0)
    private let refused = Atomic<Int>(0)
    private let timedOut = Atomic<Int>(0)

    init(headerTimeout: Double, bodyIdleTimeout: Double, idleTimeout: Double, maxConnections: Int,
         onQuiesce: @escaping @Sendable () -> Void) {
        self.headerTimeout = headerTimeout
        self.bodyIdleTimeout = bodyIdleTimeout
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.onQuiesce = onQuiesce
    }

    /// How often a connection checks its deadlines: a quarter of the shortest timeout, between
    /// 10 ms and 1 s (so a 10 s timeout fires between 10 and 11 s).
    var tick: TimeAmount {
        let shortest = min(headerTimeout, bodyIdleTimeout, idleTimeout)
        return .nanoseconds(Int64(min(1.0, max(0.01, shortest / 4)) * 1e9))
    }

    var openConnections: Int { open.load(ordering: .relaxed) }
    var refusedConnections: Int { refused.load(ordering: .relaxed) }
    var timedOutConnections: Int { timedOut.load(ordering: .relaxed) }

    /// Counts a new connection; false when it is one too many.
    func admit() -> Bool {
        let now = open.wrappingAdd(1, ordering: .relaxed).newValue
        if now > maxConnections {
            refused.wrappingAdd(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func release() { open.wrappingSubtract(1, ordering: .relaxed) }
    func countTimeout() { timedOut.wrappingAdd(1, ordering: .relaxed) }

    /// The answer a connection beyond `--max-connections` gets before it is closed.
    static let refusal: ByteBuffer = {
        let body = #"{"detail":"the server has too many open connections (--max-connections); retry shortly","status":503,"title":"Too many connections","type":"about:blank"}"#
        let head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\nRetry-After: 1\r\n"
            + "Connection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
        return ByteBuffer(string: head + body)
    }()
}

/// HTTP/1 as Hummingbird serves it, with `ConnectionLimits` enforced on every connection.
struct GuardedHTTP1Channel: ServerChildChannel {
    let inner: HTTP1Channel
    let limits: ConnectionLimits

    init(responder: @escaping HTTPChannelHandler.Responder, limits: ConnectionLimits) {
        self.limits = limits
        // Hummingbird's own idle timer is left off: ours also covers headers and bodies.
        inner = HTTP1Channel(responder: responder, configuration: .init(additionalChannelHandlers: [HTTPPhaseHandler(limits: limits)]))
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<HTTP1Channel.Value> {
        inner.setup(channel: channel, logger: logger)
    }

    func handle(value: HTTP1Channel.Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }

    static func builder(limits: ConnectionLimits) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in GuardedHTTP1Channel(responder: responder, limits: limits) }
    }
}

/// Where one connection is, shared by its two handlers (both on its event loop).
final class ConnectionClock {
    /// A request head has been read and its end has not.
    var requestOpen = false
    /// Requests whose response has not ended yet.
    var responsesPending = 0
    /// When the first byte of a request head arrived (nil: none is being read).
    var headStarted: NIODeadline?
    /// The last byte read.
    var lastRead = NIODeadline.now()
    /// When the connection last became idle (opened, or its last response ended).
    var idleSince = NIODeadline.now()
    var admitted = true
}

/// Sees raw bytes before the HTTP decoder: marks the start of a request head (so a head sent a
/// byte at a time cannot reset any timer), refuses connections beyond the maximum, and passes
/// the server's quiesce signal on to the event streams.
final class RawBytesHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    let clock: ConnectionClock
    let limits: ConnectionLimits

    init(clock: ConnectionClock, limits: ConnectionLimits) {
        self.clock = clock
        self.limits = limits
    }

    func channelActive(context: ChannelHandlerContext) {
        if !clock.admitted {
            context.writeAndFlush(wrapOutboundOut(.byteBuffer(ConnectionLimits.refusal))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard clock.admitted else { return }
        clock.lastRead = .now()
        if !clock.requestOpen && clock.headStarted == nil { clock.headStarted = clock.lastRead }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent { limits.onQuiesce() }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Sees HTTP parts after the decoder: knows when a request is being read, answered or neither,
/// and closes the connection when the deadline of that phase passes:
/// - no request in flight and no byte of the next one: `idleTimeout` after the last response;
/// - a request head being read: `headerTimeout` after its first byte, however it trickles in;
/// - a request body being read: `bodyIdleTimeout` after the last byte;
/// - a response being written (a long inference, an event stream): no limit.
final class HTTPPhaseHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let limits: ConnectionLimits
    let clock = ConnectionClock()
    private var timer: Scheduled<Void>?
    private var counted = false

    init(limits: ConnectionLimits) {
        self.limits = limits
    }

    func handlerAdded(context: ChannelHandlerContext) {
        counted = true
        clock.admitted = limits.admit()
        // Before the HTTP decoder: the raw bytes handler sees what the decoder has not made a part of yet.
        try? context.pipeline.syncOperations.addHandler(RawBytesHandler(clock: clock, limits: limits), position: .first)
        if context.channel.isActive { start(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        if counted { limits.release(); counted = false }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        if counted { limits.release(); counted = false }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            clock.requestOpen = true
            clock.headStarted = nil
            clock.responsesPending += 1
            // A client that asks before sending its body (curl does above 1 MB) would otherwise
            // wait a second for an answer. Every route reads or refuses the body itself, so
            // the body is always welcome here; the previous response on this connection has
            // ended before the next head reaches this handler.
            if head.headerFields[.expect]?.lowercased() == "100-continue" {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
            }
        case .body:
            break
        case .end:
            clock.requestOpen = false
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            clock.responsesPending = max(0, clock.responsesPending - 1)
            if clock.responsesPending == 0 { clock.idleSince = .now() }
        }
        context.write(data, promise: promise)
    }

    private func start(_ context: ChannelHandlerContext) {
        guard timer == nil, clock.admitted else { return }
        clock.idleSince = .now()
        schedule(context)
    }

    private func schedule(_ context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: limits.tick) { [self] in
            timer = nil
            if expired() {
                limits.countTimeout()
                context.close(promise: nil)
            } else if context.channel.isActive {
                schedule(context)
            }
        }
    }

    private func expired() -> Bool {
        let now = NIODeadline.now()
        func past(_ since: NIODeadline, _ seconds: Double) -> Bool { now - since > .nanoseconds(Int64(seconds * 1e9)) }
        if clock.requestOpen { return past(clock.lastRead, limits.bodyIdleTimeout) }
        if let started = clock.headStarted { return past(started, limits.headerTimeout) }
        if clock.responsesPending > 0 { return false }
        return past(clock.idleSince, limits.idleTimeout)
    }
}
