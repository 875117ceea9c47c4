import Config
import Foundation
import Hummingbird
import Store
import Synchronization
import Trainer

/// Where a client is in a job's stream: the last job event (state / checkpoint / evaluation)
/// and the last metric step it has seen. Sent as every SSE `id`, e.g. `12:340`.
struct StreamCursor: Equatable {
    var eventID: Int64
    var step: Int

    var id: String { "\(eventID):\(step)" }

    init(eventID: Int64, step: Int) {
        self.eventID = eventID
        self.step = step
    }

    init?(_ text: String) {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let e = Int64(parts[0]), let s = Int(parts[1]), e >= 0, s >= 0 else { return nil }
        self.init(eventID: e, step: s)
    }
}

extension APIRoutes {
    mutating func addEventRoutes() {
        let core = self.core
        on(.get, "/v1/jobs/{id}/events") { request, context in
            let id = try context.id()
            // Resume point: Last-Event-ID (a reconnecting client), or ?last_event_id=, or
            // ?after_step= (a dashboard that loaded the history first); else from now.
            var start: StreamCursor?
            if let raw = request.headers[.init("Last-Event-ID")!] ?? request.query("last_event_id") {
                guard let c = StreamCursor(raw) else {
                    throw APIError.invalid("Last-Event-ID", "must be an id this stream sent (like 12:340), got '\(raw)'")
                }
                start = c
            } else if let after = try request.queryInt("after_step", in: 0...Int(Int32.max)) {
                start = StreamCursor(eventID: .max, step: after)
            }
            let job = try await core.blocking { try core.job(id) }
            let ticket = try core.streams.admit()
            let stream = EventStream(core: core, jobID: id, initialState: job.state, start: start,
                                     heartbeat: core.configuration.sseHeartbeatSeconds)
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache",
                                                   .init("X-Accel-Buffering")!: "no"],
                            body: ResponseBody { writer in
                                // The body holds the ticket: its place is given back when the stream ends.
                                try await stream.run(&writer, ticket: ticket)
                            })
        }
    }
}

/// One client's event stream: replay from the database, then live events from the bus;
/// if the client falls behind the bus drops it, and the stream replays again from here.
struct EventStream: Sendable {
    let core: ServerCore
    let jobID: String
    let initialState: JobState
    let start: StreamCursor?
    let heartbeat: Double

    enum Item: Sendable {
        case event(JobEvent)
        case lagged
        case heartbeat
        case end(StreamEnd)
    }

    func run(_ writer: inout any ResponseBodyWriter, ticket: StreamRegistry.Ticket) async throws {
        var cursor: StreamCursor
        var sub = core.bus.subscribe(jobID: jobID)
        let jobID = self.jobID, core = self.core
        /// The final event of a stream whose job was deleted or whose server is stopping.
        func end(_ reason: StreamEnd, _ writer: inout any ResponseBodyWriter, _ cursor: StreamCursor) async throws {
            core.bus.unsubscribe(sub)
            try await send(&writer, "end", .object(["reason": .string(reason.rawValue)]), cursor)
            try await writer.finish(nil)
        }
        if let start {
            cursor = start
            if cursor.eventID == .max { cursor.eventID = try await core.blocking { try core.store.lastEventID(jobID: jobID) } }
        } else {
            // A new client: the current state and progress, then everything after it.
            let (job, lastEvent) = try await core.blocking { () throws -> (JobRecord?, Int64) in
                (try core.store.job(jobID), try core.store.lastEventID(jobID: jobID))
            }
            guard let job else { return try await end(.deleted, &writer, StreamCursor(eventID: lastEvent, step: 0)) }
            cursor = StreamCursor(eventID: lastEvent, step: job.step)
            try await send(&writer, "state", .object(["state": .string(job.state.rawValue), "error": job.error.map(JSONValue.string) ?? .null]), cursor)
            try await send(&writer, "progress", progressData(job), cursor)
            if job.state.isTerminal {
                core.bus.unsubscribe(sub)
                try await writer.finish(nil)
                return
            }
        }
        // Set when rows written by another process are to be read: then the job row's progress
        // is sent after them, as the trainer's own progress events reach only its process.
        var remote = false
        while true {
            if let reason = ticket.ended { return try await end(reason, &writer, cursor) }
            switch try await replay(&writer, &cursor, recent: sub.recent, progress: remote) {
            case .terminal:
                core.bus.unsubscribe(sub)
                try await writer.finish(nil)
                return
            case .deleted:
                return try await end(.deleted, &writer, cursor)
            case .live:
                break
            }
            let (items, continuation) = AsyncStream<Item>.makeStream(bufferingPolicy: .bufferingOldest(core.bus.bufferSize))
            ticket.attach(continuation)
            let events = sub.events
            let forward = Task {
                for await e in events {
                    if case .dropped = continuation.yield(.event(e)) { break }
                }
                continuation.yield(.lagged)
                continuation.finish()
            }
            let beat = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(heartbeat))
                    continuation.yield(.heartbeat)
                }
            }
            defer { forward.cancel(); beat.cancel(); core.bus.unsubscribe(sub) }
            var lastProgress = ContinuousClock.now - .seconds(1)
            remote = false
            loop: for await item in items {
                switch item {
                case .heartbeat:
                    if let reason = ticket.ended { return try await end(reason, &writer, cursor) }
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    // On a shared database, re-read now and then even without a notification:
                    // one lost on the way delays a client by a heartbeat, never for good.
                    if core.store.isShared {
                        remote = true
                        break loop
                    }
                case .lagged:
                    break loop
                case .end(let reason):
                    forward.cancel()
                    beat.cancel()
                    return try await end(reason, &writer, cursor)
                case .event(let e):
                    switch e {
                    case .metric(let m):
                        guard m.step > cursor.step else { continue }
                        cursor.step = m.step
                        try await send(&writer, "metric", metricData(m), cursor)
                    case .progress(_, let p, let total):
                        // At most 4 a second: tiny jobs run hundreds of steps a second.
                        guard ContinuousClock.now - lastProgress >= .milliseconds(250) || p.step == total else { continue }
                        lastProgress = ContinuousClock.now
                        try await send(&writer, "progress", progressData(p, total: total), cursor)
                    case .state(_, let state, let error, let eventID):
                        if let eventID, eventID <= cursor.eventID { continue }
                        // Metrics of the final steps are committed before the state change.
                        if state.isTerminal || eventID == nil { break loop }
                        cursor.eventID = eventID ?? cursor.eventID
                        try await send(&writer, "state", .object(["state": .string(state.rawValue), "error": error.map(JSONValue.string) ?? .null]), cursor)
                    case .checkpoint(let c, let eventID):
                        if let eventID, eventID <= cursor.eventID { continue }
                        if let eventID { cursor.eventID = eventID }
                        try await send(&writer, "checkpoint", checkpointData(c), cursor)
                    case .deleted:
                        forward.cancel()
                        beat.cancel()
                        return try await end(.deleted, &writer, cursor)
                    case .stored:
                        remote = true
                        break loop
                    }
                }
            }
            // Lagged, or a state change without an id: catch up from the database.
            forward.cancel()
            beat.cancel()
            core.bus.unsubscribe(sub)
            sub = core.bus.subscribe(jobID: jobID)
        }
    }

    enum ReplayOutcome { case live, terminal, deleted }

    /// Sends what the database (and the bus's recent metrics) hold after `cursor`, and says
    /// whether the job is still live, has reached a terminal state, or is gone.
    private func replay(_ writer: inout any ResponseBodyWriter, _ cursor: inout StreamCursor, recent: [MetricRecord],
                        progress: Bool) async throws -> ReplayOutcome {
        let (core, jobID) = (self.core, self.jobID)
        var terminal = false
        // In pages, off the event loops and the cooperative pool: a client that reconnects to a
        // long job never makes the server hold all of its history at once.
        while true {
            let after = cursor
            let page = try await core.blocking {
                try core.store.historyPage(jobID: jobID, afterStep: after.step, afterEventID: after.eventID, limit: Self.replayPageSize)
            }
            var metrics = page.metrics
            if page.isLast { metrics += recent.filter { $0.step > (metrics.last?.step ?? after.step) } }
            for m in metrics where m.step > cursor.step {
                cursor.step = m.step
                try await send(&writer, "metric", metricData(m), cursor)
            }
            for e in page.events {
                cursor.eventID = e.id ?? cursor.eventID
                let data = (try? JSONDecoder().decode(JSONValue.self, from: Data(e.dataJSON.utf8))) ?? .null
                switch e.kind {
                case .state:
                    var fields: [String: JSONValue] = ["error": .null]
                    if case .object(let o) = data { fields.merge(o) { $1 } }
                    try await send(&writer, "state", .object(fields), cursor)
                    if case .string(let s)? = fields["state"], JobState(rawValue: s)?.isTerminal == true { terminal = true }
                case .checkpoint:
                    try await send(&writer, "checkpoint", data, cursor)
                case .evaluation:
                    try await send(&writer, "evaluation", data, cursor)
                }
            }
            guard page.isLast else { continue }
            guard let job = page.job else { return .deleted }
            if progress, !job.state.isTerminal { try await send(&writer, "progress", progressData(job), cursor) }
            if !terminal, job.state.isTerminal {
                // The terminal event was sent before this cursor: say it again so the client knows.
                try await send(&writer, "state", .object(["state": .string(job.state.rawValue), "error": job.error.map(JSONValue.string) ?? .null]), cursor)
                terminal = true
            }
            return terminal ? .terminal : .live
        }
    }

    /// Rows per replay read: a few hundred KB of JSON at most.
    static let replayPageSize = 1_000

    private func send(_ writer: inout any ResponseBodyWriter, _ event: String, _ data: JSONValue, _ cursor: StreamCursor) async throws {
        let json = String(decoding: try JSON.encoder.encode(data), as: UTF8.self)
        try await writer.write(ByteBuffer(string: "id: \(cursor.id)\nevent: \(event)\ndata: \(json)\n\n"))
    }

    private func metricData(_ m: MetricRecord) -> JSONValue {
        .object(["step": .number(Double(m.step)), "loss": .number(m.loss), "lr": .number(m.lr),
                 "images_per_s": m.imagesPerS.map(JSONValue.number) ?? .null, "wall_time_s": .number(m.wallTimeS)])
    }

    private func progressData(_ p: JobProgress, total: Int) -> JSONValue {
        .object(["step": .number(Double(p.step)), "total_steps": .number(Double(total)), "loss": p.loss.map(JSONValue.number) ?? .null,
                 "lr": p.lr.map(JSONValue.number) ?? .null, "images_per_s": p.imagesPerS.map(JSONValue.number) ?? .null,
                 "eta_s": p.etaS.map(JSONValue.number) ?? .null])
    }

    private func progressData(_ j: JobRecord) -> JSONValue {
        progressData(JobProgress(step: j.step, loss: j.loss, lr: j.lr, imagesPerS: j.imagesPerS, etaS: j.etaS), total: j.totalSteps)
    }

    private func checkpointData(_ c: CheckpointRecord) -> JSONValue {
        .object(["step": .number(Double(c.step)), "bytes": .number(Double(c.bytes)), "sha256": .string(c.sha256), "final": .bool(c.isFinal)])
    }
}

/// Why a stream ended without its job reaching a terminal state: sent as a final `end` event.
enum StreamEnd: String, Sendable {
    case deleted
    case shutdown
}

/// The open event streams: at most `--max-streams` at once, and all of them ended (with a
/// final `end` event) when the server begins its graceful shutdown, so that the HTTP server
/// drains at once and the trainer pool checkpoints its jobs within the grace period.
final class StreamRegistry: Sendable {
    let limit: Int

    /// One stream's hold on a place; the place is given back when the ticket is released (the
    /// response body, which holds it, ran or was dropped).
    final class Ticket: Sendable {
        fileprivate let registry: StreamRegistry
        fileprivate let id: Int
        fileprivate let state = Mutex<(ended: StreamEnd?, current: AsyncStream<EventStream.Item>.Continuation?)>((nil, nil))

        fileprivate init(registry: StreamRegistry, id: Int) {
            self.registry = registry
            self.id = id
        }

        deinit { registry.release(id) }

        /// The shutdown reason, once the server is stopping.
        var ended: StreamEnd? { state.withLock { $0.ended } }

        /// Where the stream reads its items now; an end already decided is delivered at once.
        func attach(_ continuation: AsyncStream<EventStream.Item>.Continuation) {
            let ended = state.withLock { s -> StreamEnd? in
                s.current = continuation
                return s.ended
            }
            if let ended { continuation.yield(.end(ended)) }
        }

        fileprivate func end(_ reason: StreamEnd) {
            let target = state.withLock { s -> AsyncStream<EventStream.Item>.Continuation? in
                guard s.ended == nil else { return nil }
                s.ended = reason
                return s.current
            }
            target?.yield(.end(reason))
        }
    }

    private struct State {
        var next = 0
        var open: [Int: WeakTicket] = [:]
        var stopping = false
    }

    private struct WeakTicket: @unchecked Sendable {
        weak var ticket: Ticket?
    }

    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = limit
    }

    var openCount: Int { state.withLock { $0.open.count } }

    /// A place for one more stream, or a 503 (full, or the server is stopping).
    func admit() throws -> Ticket {
        try state.withLock { s throws -> Ticket in
            if s.stopping {
                var e = APIError(.serviceUnavailable, "Shutting down", "the server is stopping; reconnect once it is back")
                e.headers[.retryAfter] = "5"
                throw e
            }
            guard s.open.count < limit else {
                var e = APIError(.serviceUnavailable, "Too many event streams",
                                 "\(limit) event streams are open, the most this server allows (--max-streams); retry shortly")
                e.headers[.retryAfter] = "5"
                throw e
            }
            s.next += 1
            let ticket = Ticket(registry: self, id: s.next)
            s.open[s.next] = WeakTicket(ticket: ticket)
            return ticket
        }
    }

    fileprivate func release(_ id: Int) {
        _ = state.withLock { $0.open.removeValue(forKey: id) }
    }

    /// Ends every open stream and refuses new ones (graceful shutdown).
    func shutdown() {
        let tickets = state.withLock { s -> [Ticket] in
            s.stopping = true
            return s.open.values.compactMap(\.ticket)
        }
        for t in tickets { t.end(.shutdown) }
    }
}
