using System.Globalization;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace Storage.Cli;

/// <summary>
/// Status tables and the console they render on (Spectre.Console): colours and the terminal's width on a terminal,
/// plain text 200 columns wide when the output is a pipe, a file or a test's writer.
/// </summary>
internal static class Tables
{
    public static Table Create(params string[] headers)
    {
        var table = new Table().Border(TableBorder.Simple);
        foreach (var header in headers)
            table.AddColumn(new TableColumn(header));
        return table;
    }

    public static IRenderable Cell(object? value) => new Text(Convert.ToString(value, CultureInfo.InvariantCulture) ?? "");

    public static void Write(TextWriter output, IRenderable renderable) => ConsoleFor(output).Write(renderable);

    /// <summary>True when <paramref name="output"/> is the process's standard output and that is a terminal.</summary>
    public static bool IsTerminal(TextWriter output) => output == Console.Out && !Console.IsOutputRedirected;

    public static IAnsiConsole ConsoleFor(TextWriter output)
    {
        bool terminal = IsTerminal(output);
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = terminal ? InteractionSupport.Detect : InteractionSupport.No,
        });
        if (!terminal)
            console.Profile.Width = 200;
        return console;
    }
}
