import Foundation
import Hummingbird
import Store
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
            let job = try core.job(id)
            // Resume point: Last-Event-ID (EventSource reconnects), or ?last_event_id=, or
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
            let stream = EventStream(core: core, jobID: id, initialState: job.state, start: start,
                                     heartbeat: core.configuration.sseHeartbeatSeconds)
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache",
                                                   .init("X-Accel-Buffering")!: "no"],
                            body: ResponseBody { writer in try await stream.run(&writer) })
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
    }

    func run(_ writer: inout any ResponseBodyWriter) async throws {
        var cursor: StreamCursor
        var sub = core.bus.subscribe(jobID: jobID)
        if let start {
            cursor = start
            if cursor.eventID == .max { cursor.eventID = try core.store.events(jobID: jobID).last?.id ?? 0 }
        } else {
            // A new client: the current state and progress, then everything after it.
            let job = try core.job(jobID)
            cursor = StreamCursor(eventID: try core.store.events(jobID: jobID).last?.id ?? 0, step: job.step)
            try await send(&writer, "state", .object(["state": .string(job.state.rawValue), "error": job.error.map(JSONValue.string) ?? .null]), cursor)
            try await send(&writer, "progress", progressData(job), cursor)
            if job.state.isTerminal {
                try await writer.finish(nil)
                return
            }
        }
        while true {
            if try await replay(&writer, &cursor, recent: sub.recent) {
                core.bus.unsubscribe(sub)
                try await writer.finish(nil)
                return
            }
            let (items, continuation) = AsyncStream<Item>.makeStream(bufferingPolicy: .bufferingOldest(core.bus.bufferSize))
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
            loop: for await item in items {
                switch item {
                case .heartbeat:
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                case .lagged:
                    break loop
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

    /// Sends what the database (and the bus's recent metrics) hold after `cursor`; true when
    /// the job has reached a terminal state and the stream should end.
    private func replay(_ writer: inout any ResponseBodyWriter, _ cursor: inout StreamCursor, recent: [MetricRecord]) async throws -> Bool {
        var metrics = try core.store.metrics(jobID: jobID, afterStep: cursor.step)
        if let last = metrics.last?.step ?? Optional(cursor.step) {
            metrics += recent.filter { $0.step > last }
        }
        for m in metrics where m.step > cursor.step {
            cursor.step = m.step
            try await send(&writer, "metric", metricData(m), cursor)
        }
        var terminal = false
        for e in try core.store.events(jobID: jobID, afterID: cursor.eventID) {
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
        if !terminal, let job = try core.store.job(jobID), job.state.isTerminal {
            // The terminal event was sent before this cursor: say it again so the client knows.
            try await send(&writer, "state", .object(["state": .string(job.state.rawValue), "error": job.error.map(JSONValue.string) ?? .null]), cursor)
            terminal = true
        }
        return terminal
    }

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
