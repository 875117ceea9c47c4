import Foundation
import Logging
import NIOCore
import PostgresNIO

extension PostgresStore {
    /// The channel of this store's schema: writers name it in SQL (`notifyChange`), so both ends
    /// agree on the schema PostgreSQL actually resolved.
    static let channelExpression = "'mimserve.' || current_schema()"

    /// LISTENs on a connection of its own (a pooled one would be handed to other work). When the
    /// connection fails, it reconnects with backoff and reports `.unknown` once listening again,
    /// since notifications sent in between are lost.
    func watchChanges(_ onChange: @escaping @Sendable (StoreChange) -> Void) -> StoreWatch? {
        let config = Self.connectionConfiguration(location, tls: tls, applicationName: applicationName + "-listen", bounded: false)
        let own = applicationName
        return StoreWatch({ onListening in
            var delay = 0.25
            var missed = false
            while !Task.isCancelled {
                do {
                    let conn = try await PostgresConnection.connect(on: PostgresBlocking.group.next(), configuration: config,
                                                                    id: 1, logger: Self.logger).get()
                    do {
                        let schema = try await conn.rows("SELECT current_schema()")[0].decode(String.self)
                        try await conn.listen(on: "mimserve.\(schema)") { notifications in
                            // LISTEN has taken effect once `listen` calls this closure.
                            onListening()
                            if missed { onChange(.unknown) }
                            missed = false
                            delay = 0.25
                            for try await n in notifications {
                                let parts = n.payload.split(separator: " ", maxSplits: 1).map(String.init)
                                guard parts.count == 2, parts[0] != own else { continue }
                                onChange(.job(parts[1]))
                            }
                        }
                    } catch {
                        try? await conn.close()
                        throw error
                    }
                    try? await conn.close()
                } catch {
                    if !Task.isCancelled { Self.logger.warning("change notifications: \(Self.storeError(error)); reconnecting") }
                }
                missed = true
                try? await Task.sleep(for: .seconds(delay))
                delay = min(delay * 2, 5)
            }
        }, executor: PostgresBlocking.executor)
    }
}
