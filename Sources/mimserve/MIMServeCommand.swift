import ArgumentParser

@main
struct MIMServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mimserve",
        abstract: "MIMServe: masked-image-modeling pretraining.",
        subcommands: [ImportHF.self, ExportHF.self]
    )
}
