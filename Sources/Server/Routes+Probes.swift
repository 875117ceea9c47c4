import Foundation
import Hummingbird
import Prometheus
import Store

extension APIRoutes {
    /// `/healthz`, `/readyz` and `/metrics`: all a worker serves, and the first of an API node's.
    mutating func addProbeRoutes() {
        let core = self.core
        on(.get, "/healthz") { _, _ in try JSON.response(["status": "ok"]) }

        on(.get, "/readyz") { _, _ in
            let (writable, applied) = try await core.blocking { (core.store.probeWrite(), (try? core.store.appliedMigrations()) ?? []) }
            let migrated = applied == core.store.migrations.files.map(\.name)
            let alive = core.pool.aliveSlots == core.configuration.trainerSlots
            let checks: [String: Bool] = ["database_writable": writable, "migrations_applied": migrated, "trainer_pool_running": alive]
            let ready = checks.values.allSatisfy { $0 }
            struct Body: Encodable { let status: String; let checks: [String: Bool]; let migrations: [String] }
            return try JSON.response(Body(status: ready ? "ready" : "not ready", checks: checks, migrations: applied),
                                     status: ready ? .ok : .serviceUnavailable)
        }

        on(.get, "/metrics") { _, _ in
            let running = core.pool.runningJobs
            let (counts, runningJobs) = try await core.blocking { () -> ([JobState: Int], [JobRecord]) in
                ((try? core.store.countsByState()) ?? [:], running.compactMap { try? core.store.job($0) })
            }
            let r = core.prometheus
            for state in JobState.allCases {
                Self.gauge(r, "jobs", "Jobs by state", [("state", state.rawValue)]).set(Double(counts[state] ?? 0))
            }
            Self.gauge(r, "queue_depth", "Jobs waiting for a trainer slot").set(Double(counts[.queued] ?? 0))
            let elapsed = Date().timeIntervalSince(core.startedAt)
            Self.gauge(r, "training_steps_per_second", "Training steps per second since start (all slots)")
                .set(elapsed > 0 ? Double(core.pool.stepsDone) / elapsed : 0)
            Self.gauge(r, "training_steps_completed", "Training steps completed since start").set(Double(core.pool.stepsDone))
            Self.gauge(r, "trainer_slots_alive", "Trainer threads running").set(Double(core.pool.aliveSlots))
            Self.gauge(r, "trainer_jobs_training", "Jobs this process's slots are training now").set(Double(core.pool.runningJobs.count))
            Self.gauge(r, "inference_in_flight", "Inference slots busy").set(Double(core.inference.inFlight))
            Self.gauge(r, "inference_waiting", "Reconstruct and features requests waiting for a slot or their batch")
                .set(Double(core.inference.waiting))
            let batching = core.inference.batchCounts
            Self.gauge(r, "inference_batches", "Inference forward-pass batches run since start").set(Double(batching.batches))
            Self.gauge(r, "inference_batched_requests", "Reconstruct and features requests those batches served").set(Double(batching.requests))
            for job in runningJobs {
                if let loss = job.loss {
                    Self.gauge(r, "job_last_loss", "Last logged loss of a running job", [("job", job.id), ("method", job.method)])
                        .set(loss)
                }
            }
            Self.gauge(r, "http_connections_open", "Open HTTP connections").set(Double(core.limits.openConnections))
            Self.gauge(r, "http_connections_refused", "Connections refused since start (--max-connections)")
                .set(Double(core.limits.refusedConnections))
            Self.gauge(r, "http_connections_timed_out", "Connections closed by a header, body or idle timeout since start")
                .set(Double(core.limits.timedOutConnections))
            Self.gauge(r, "event_streams_open", "Open event streams").set(Double(core.streams.openCount))
            var bytes: [UInt8] = []
            r.emit(into: &bytes)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
    }
}
