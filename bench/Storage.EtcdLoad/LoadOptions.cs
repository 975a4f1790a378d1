using System.Globalization;

namespace Storage.EtcdLoad;

/// <summary>Command-line options of the load generator.</summary>
internal sealed class LoadOptions
{
    public string Target = "";
    public string[] Endpoints = [];
    public string Op = "put";
    public int Inflight = 64;
    public double Seconds = 15;
    public double WarmupSeconds = 2;
    public int ValueBytes = 100;
    public int Keys = 100_000;
    public bool Prefill;
    public int[] Pids = [];

    public static LoadOptions Parse(string[] args)
    {
        var o = new LoadOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new FormatException($"{args[i]} needs a value");
            int Int() => int.TryParse(Value(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v > 0
                ? v : throw new FormatException($"{args[i]} needs a positive integer");
            double Seconds() => double.TryParse(Value(), NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v >= 0
                ? v : throw new FormatException($"{args[i]} needs a number of seconds");
            switch (args[i])
            {
                case "--target": o.Target = Value(); break;
                case "--endpoints": o.Endpoints = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries); break;
                case "--op": o.Op = Value(); break;
                case "--inflight": o.Inflight = Int(); break;
                case "--seconds": o.Seconds = Seconds(); break;
                case "--warmup": o.WarmupSeconds = Seconds(); break;
                case "--value-bytes": o.ValueBytes = Int(); break;
                case "--keys": o.Keys = Int(); break;
                case "--prefill": o.Prefill = true; break;
                case "--pids":
                    o.Pids = [.. Value().Split(',', StringSplitOptions.RemoveEmptyEntries).Select(p =>
                        int.TryParse(p, NumberStyles.Integer, CultureInfo.InvariantCulture, out int pid) && pid > 0
                            ? pid : throw new FormatException($"bad pid '{p}'"))];
                    break;
                default: throw new FormatException($"unknown argument {args[i]}");
            }
        }
        if (o.Target is not ("etcd" or "meta"))
            throw new FormatException("--target must be etcd or meta");
        if (o.Op is not ("put" or "get"))
            throw new FormatException("--op must be put or get");
        if (o.Endpoints.Length == 0)
            throw new FormatException("--endpoints is required");
        if (o.Seconds <= 0)
            throw new FormatException("--seconds must be positive");
        return o;
    }
}
