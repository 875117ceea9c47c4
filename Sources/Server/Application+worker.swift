import Foundation
import Hummingbird
import Store

/// Builds a worker: trainer slots that claim jobs from a shared PostgreSQL queue, and only the
/// probes (`/healthz`, `/readyz`, `/metrics`) over HTTP; no API, no dashboard. Workers and API
/// nodes mount the same checkpoint directory (and may share the data dir); leases, not a file
/// lock, keep two of them from training one job.
public func buildWorker(configuration c: ServerConfiguration,
                        onListening: @escaping @Sendable (String, Int) async -> Void = { _, _ in }) throws -> some ApplicationProtocol {
    var problems = c.problems(servesAPI: false)
    if c.trainerSlots < 1 { problems.append("trainer-slots: a worker needs at least 1") }
    // A SQLite file belongs to the one server that locked its data dir: a worker beside it
    // could not share the queue, only contend for the file.
    if case .sqlite? = try? c.databaseLocation() {
        problems.append("database: a worker needs a PostgreSQL database shared with the API nodes (--database postgres://…); for one machine, run `mimserve serve` alone")
    }
    if !problems.isEmpty { throw StartupError(description: problems.joined(separator: "; ")) }
    let core = try makeCore(c, role: .worker)
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: RequestMetricsMiddleware(registry: core.prometheus))
    router.add(middleware: ProblemMiddleware())
    var routes = APIRoutes(router: router, core: core)
    routes.addProbeRoutes()
    let host = c.host
    return Application(
        router: router,
        server: GuardedHTTP1Channel.builder(limits: core.limits),
        configuration: .init(address: .hostname(c.host, port: c.port), serverName: "MIMServe worker"),
        services: [TrainerService(pool: core.pool, streams: nil, logger: core.logger)],
        onServerRunning: { channel in
            await onListening(host, channel.localAddress?.port ?? c.port)
        },
        logger: core.logger)
}
