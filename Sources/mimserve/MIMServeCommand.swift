import ArgumentParser

@main
struct MIMServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mimserve",
        abstract: "MIMServe: a self-hosted server for masked-image-modeling pretraining.",
        subcommands: [Serve.self, Worker.self, ImportHF.self, ExportHF.self, Schema.self],
        defaultSubcommand: Serve.self
    )
}
