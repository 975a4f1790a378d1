using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Storage.Devices;

namespace Storage.Nbd.Tests;

/// <summary>
/// An in-process server with one export "disk" over a memory device of random content, listening on 127.0.0.1 (any
/// port) and on a Unix socket in a scratch directory. Disposing stops it and fails the test if the server met an
/// error it did not expect (a bug, as opposed to a client's or device's misbehaviour).
/// </summary>
internal sealed class TestServer : IAsyncDisposable
{
    private readonly TempDirectory _directory = new();

    public TestServer(IBlockDevice? device = null, long capacity = 16 << 20, int sectorSize = 512, bool readOnly = false,
        NbdServerOptions? options = null, int seed = 1, string? description = "test disk")
    {
        Memory = device as MemoryBlockDevice;
        if (device is null)
        {
            Memory = new MemoryBlockDevice(capacity, sectorSize, "test-disk");
            new Random(seed).NextBytes(Memory.Bytes);
            device = Memory;
        }
        Device = device;
        var log = Log;
        Server = new NbdServer(options is null
            ? new NbdServerOptions { Log = log.Enqueue }
            : new NbdServerOptions
            {
                Log = log.Enqueue,
                MaxPayloadSize = options.MaxPayloadSize,
                PreferredBlockSize = options.PreferredBlockSize,
                MaxRequestsInFlight = options.MaxRequestsInFlight,
                MaxBytesInFlight = options.MaxBytesInFlight,
                MaxConnections = options.MaxConnections,
                HandshakeTimeout = options.HandshakeTimeout,
                StopTimeout = options.StopTimeout,
                DefaultExport = options.DefaultExport,
            });
        Export = new NbdExport("disk", device, readOnly, description);
        Server.AddExport(Export);
        Tcp = Server.ListenTcp(new IPEndPoint(IPAddress.Loopback, 0));
        Unix = Server.ListenUnix(_directory.File("nbd.sock"));
    }

    public NbdServer Server { get; }

    public NbdExport Export { get; }

    public IBlockDevice Device { get; }

    /// <summary>The device when it is the memory disk this server made (or was given).</summary>
    public MemoryBlockDevice? Memory { get; }

    public IPEndPoint Tcp { get; }

    public UnixDomainSocketEndPoint Unix { get; }

    public string UnixPath => Unix.ToString();

    public ConcurrentQueue<string> Log { get; } = new();

    public EndPoint EndPoint(string transport) => transport == "unix" ? Unix : Tcp;

    public string Uri(string transport, string export = "disk") => NbdServer.FormatUri(EndPoint(transport), export);

    public string Scratch(string name) => _directory.File(name);

    /// <summary>Waits until the server has closed every connection.</summary>
    public Task WaitForNoConnectionsAsync() => WaitForConnectionsAsync(0);

    /// <summary>Waits until the server counts <paramref name="count"/> connections (accepting is asynchronous).</summary>
    public async Task WaitForConnectionsAsync(int count)
    {
        for (int i = 0; i < 500 && Server.ConnectionCount != count; i++)
            await Task.Delay(10);
        Assert.True(Server.ConnectionCount == count, $"{Server.ConnectionCount} connection(s) open, expected {count}");
    }

    public async ValueTask DisposeAsync()
    {
        await Server.StopAsync();
        _directory.Dispose();
        Assert.True(Server.UnexpectedErrorCount == 0, "the server met unexpected errors:\n" + string.Join("\n", Log.Where(l => l.Contains("unexpected", StringComparison.Ordinal))));
        Device.Dispose();
    }
}
