using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace Storage.Parity.Interop;

/// <summary>
/// Intel ISA-L (<c>libisal.so.2</c>, Debian package <c>libisal2</c>) loaded at run time, as the
/// reference that tests compare bytes with and benchmarks compare speed with. Calls go through
/// unmanaged function pointers and allocate nothing. Not needed by the product itself.
/// </summary>
public sealed unsafe class IsaL
{
    /// <summary>The shared library name that is loaded.</summary>
    public const string LibraryName = "libisal.so.2";

    private static readonly Lazy<(IsaL? Library, string Reason)> Loaded = new(Load);

    private readonly nint _handle;
    private readonly delegate* unmanaged<byte, byte, byte> _gfMul;
    private readonly delegate* unmanaged<byte*, int, int, void> _gfGenCauchy1Matrix;
    private readonly delegate* unmanaged<byte*, byte*, int, int> _gfInvertMatrix;
    private readonly delegate* unmanaged<int, int, byte*, byte*, void> _ecInitTables;
    private readonly delegate* unmanaged<byte, byte*, void> _gfVectMulInit;
    private readonly delegate* unmanaged<int, byte*, byte*, byte*, int> _gfVectMul;

    private IsaL(nint handle)
    {
        _handle = handle;
        _gfMul = (delegate* unmanaged<byte, byte, byte>)Export("gf_mul");
        _gfGenCauchy1Matrix = (delegate* unmanaged<byte*, int, int, void>)Export("gf_gen_cauchy1_matrix");
        _gfInvertMatrix = (delegate* unmanaged<byte*, byte*, int, int>)Export("gf_invert_matrix");
        _ecInitTables = (delegate* unmanaged<int, int, byte*, byte*, void>)Export("ec_init_tables");
        _gfVectMulInit = (delegate* unmanaged<byte, byte*, void>)Export("gf_vect_mul_init");
        _gfVectMul = (delegate* unmanaged<int, byte*, byte*, byte*, int>)Export("gf_vect_mul");
        Dispatched = Variant("");
    }

    /// <summary>The loaded library, or null when it is not installed (see <see cref="UnavailableReason"/>).</summary>
    public static IsaL? Instance => Loaded.Value.Library;

    /// <summary>Why <see cref="Instance"/> is null, with what to install.</summary>
    public static string UnavailableReason => Loaded.Value.Reason;

    /// <summary>ISA-L's own runtime dispatch (what an application linking it gets).</summary>
    public Functions Dispatched { get; }

    /// <summary>
    /// The entry points of one ISA-L code path: "" (dispatched), "avx2", "avx512", …; null when the library
    /// lacks it or this CPU cannot run it. (ISA-L's xor_gen has no AVX2 path; its 256-bit AVX one is used.)
    /// </summary>
    public Functions? TryVariant(string name)
    {
        bool runnable = name switch
        {
            "" => true,
            "avx2" => Avx2.IsSupported,
            "avx512" => Avx512BW.IsSupported,
            _ => false,
        };
        if (!runnable)
            return null;
        try
        {
            return Variant(name);
        }
        catch (EntryPointNotFoundException)
        {
            return null;
        }
    }

    /// <summary>gf_mul(a, b).</summary>
    public byte GfMul(byte a, byte b) => _gfMul(a, b);

    /// <summary>gf_gen_cauchy1_matrix(a, rows, k): a is rows×k.</summary>
    public void GfGenCauchy1Matrix(byte* a, int rows, int k) => _gfGenCauchy1Matrix(a, rows, k);

    /// <summary>gf_invert_matrix(input, output, n); 0 on success. input is destroyed.</summary>
    public int GfInvertMatrix(byte* input, byte* output, int n) => _gfInvertMatrix(input, output, n);

    /// <summary>ec_init_tables(k, rows, a, tables): tables needs 32·k·rows bytes.</summary>
    public void EcInitTables(int k, int rows, byte* a, byte* tables) => _ecInitTables(k, rows, a, tables);

    /// <summary>gf_vect_mul_init(c, table): table needs 32 bytes.</summary>
    public void GfVectMulInit(byte c, byte* table) => _gfVectMulInit(c, table);

    /// <summary>gf_vect_mul(len, table, source, destination): destination = c·source; 0 on success. len a multiple of 32.</summary>
    public int GfVectMul(int length, byte* table, byte* source, byte* destination) => _gfVectMul(length, table, source, destination);

    private Functions Variant(string name)
    {
        string suffix = name.Length == 0 ? "" : "_" + name;
        string xorName = name == "avx2" ? "xor_gen_avx" : "xor_gen" + suffix;
        return new Functions(
            name.Length == 0 ? "isa-l" : "isa-l-" + name,
            (delegate* unmanaged<int, int, void**, int>)Export(xorName),
            (delegate* unmanaged<int, int, void**, int>)Export("pq_gen" + suffix),
            (delegate* unmanaged<int, int, int, byte*, byte**, byte**, void>)Export("ec_encode_data" + suffix));
    }

    private nint Export(string name)
        => NativeLibrary.TryGetExport(_handle, name, out var address)
            ? address
            : throw new EntryPointNotFoundException($"{LibraryName} has no export '{name}'.");

    private static (IsaL?, string) Load()
    {
        if (!OperatingSystem.IsLinux() || !NativeLibrary.TryLoad(LibraryName, out var handle))
            return (null, $"{LibraryName} is not installed (Debian: apt-get install libisal2).");
        try
        {
            return (new IsaL(handle), "");
        }
        catch (EntryPointNotFoundException e)
        {
            return (null, e.Message);
        }
    }

    /// <summary>One code path's parity entry points. Buffers must be 32-byte aligned; lengths multiples of 32 (pq_gen: 64).</summary>
    public readonly struct Functions
    {
        private readonly delegate* unmanaged<int, int, void**, int> _xorGen;
        private readonly delegate* unmanaged<int, int, void**, int> _pqGen;
        private readonly delegate* unmanaged<int, int, int, byte*, byte**, byte**, void> _ecEncodeData;

        internal Functions(string name, delegate* unmanaged<int, int, void**, int> xorGen, delegate* unmanaged<int, int, void**, int> pqGen,
            delegate* unmanaged<int, int, int, byte*, byte**, byte**, void> ecEncodeData)
        {
            Name = name;
            _xorGen = xorGen;
            _pqGen = pqGen;
            _ecEncodeData = ecEncodeData;
        }

        /// <summary>"isa-l" or "isa-l-avx2", …</summary>
        public string Name { get; }

        /// <summary>xor_gen(vects, len, array): array[vects-1] = XOR of the rest; 0 on success.</summary>
        public int XorGen(int vects, int length, void** array) => _xorGen(vects, length, array);

        /// <summary>pq_gen(vects, len, array): the last two pointers receive P and Q; 0 on success.</summary>
        public int PqGen(int vects, int length, void** array) => _pqGen(vects, length, array);

        /// <summary>ec_encode_data(len, k, rows, tables, data, coding).</summary>
        public void EcEncodeData(int length, int k, int rows, byte* tables, byte** data, byte** coding)
            => _ecEncodeData(length, k, rows, tables, data, coding);
    }
}
