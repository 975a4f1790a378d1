namespace Storage.Cli;

/// <summary>Bad command-line input; the message says what to do instead.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary><c>--name value</c> and <c>--flag</c> options, checked against the names a command accepts.</summary>
internal sealed class Options
{
    private readonly Dictionary<string, string?> _values;

    private Options(Dictionary<string, string?> values) => _values = values;

    public static Options Parse(string[] args, params string[] accepted)
    {
        var values = new Dictionary<string, string?>(StringComparer.Ordinal);
        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal))
                throw new UsageException($"unexpected argument '{arg}'; options look like --name value.");
            string name = arg[2..];
            if (!accepted.Contains(name))
            {
                var close = accepted.FirstOrDefault(a => Distance(a, name) <= 2);
                throw new UsageException($"unknown option '--{name}'.{(close is null ? "" : $" Did you mean '--{close}'?")} Accepted: {string.Join(", ", accepted.Select(a => "--" + a))}.");
            }
            bool hasValue = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal);
            values[name] = hasValue ? args[++i] : null;
        }
        return new Options(values);
    }

    public bool Has(string name) => _values.ContainsKey(name);

    public string? String(string name) => _values.GetValueOrDefault(name);

    public int Int(string name, int fallback, int min, int max)
    {
        if (!_values.TryGetValue(name, out var text))
            return fallback;
        if (text is null || !int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int value))
            throw new UsageException($"--{name} needs a whole number, got '{text}'.");
        if (value < min || value > max)
            throw new UsageException($"--{name} must be between {min} and {max}, got {value}.");
        return value;
    }

    /// <summary>A byte size such as 4096, 64K, 512M or 2G (binary units); <paramref name="fallback"/> when absent.</summary>
    public long Size(string name, long fallback, long min, long max)
    {
        if (!_values.TryGetValue(name, out var text))
            return fallback;
        if (text is null || !TryParseSize(text, out long value))
            throw new UsageException($"--{name} needs a size such as 4096, 64K, 512M or 2G, got '{text}'.");
        if (value < min || value > max)
            throw new UsageException($"--{name} must be between {min} and {max} bytes, got {value}.");
        return value;
    }

    public static bool TryParseSize(string text, out long value)
    {
        value = 0;
        int shift = char.ToUpperInvariant(text.Length > 0 ? text[^1] : ' ') switch { 'K' => 10, 'M' => 20, 'G' => 30, 'T' => 40, _ => 0 };
        string digits = shift == 0 ? text : text[..^1];
        if (!long.TryParse(digits, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long number) || number > long.MaxValue >> shift)
            return false;
        value = number << shift;
        return true;
    }

    /// <summary>A comma-separated list; each item may be a glob (<c>dir/*.img</c>), expanded and sorted.</summary>
    public IReadOnlyList<string> Paths(string name)
    {
        if (!_values.TryGetValue(name, out var text) || string.IsNullOrWhiteSpace(text))
            return [];
        var paths = new List<string>();
        foreach (var item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (item.IndexOfAny(['*', '?']) < 0)
            {
                paths.Add(Path.GetFullPath(item));
                continue;
            }
            string directory = Path.GetDirectoryName(Path.GetFullPath(item)) ?? ".";
            var matches = Directory.Exists(directory) ? Directory.GetFiles(directory, Path.GetFileName(item)) : [];
            if (matches.Length == 0)
                throw new UsageException($"--{name}: '{item}' matches no file.");
            Array.Sort(matches, StringComparer.Ordinal);
            paths.AddRange(matches);
        }
        return paths;
    }

    /// <summary>Levenshtein distance, for "did you mean".</summary>
    public static int Distance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            int previous = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int current = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), previous + (a[i - 1] == b[j - 1] ? 0 : 1));
                previous = current;
            }
        }
        return row[b.Length];
    }
}
