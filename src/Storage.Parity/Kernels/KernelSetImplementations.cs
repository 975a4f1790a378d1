using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Storage.Parity.Kernels;

/// <summary>Table-driven scalar reference; runs everywhere and is what every other set is tested against.</summary>
internal sealed unsafe class ScalarKernels : KernelSet
{
    public override string Name => "scalar";
    public override bool IsSupported => true;
    internal override void Xor(byte** sources, int count, byte* destination, nint length) => XorScalar.Run(sources, count, destination, length);
    internal override void PqGen(byte** data, int count, byte* p, byte* q, nint length) => PqGenScalar.Run(data, count, p, q, length);
    internal override void DotProduct(GfCoefficients c, byte** inputs, byte** outputs, nint length, bool accumulate) => DotProductScalar.Run(c, inputs, outputs, length, accumulate);
}

/// <summary>128-bit vectors: SSSE3 on x64, AdvSimd (NEON) on Arm64.</summary>
internal sealed unsafe class Vector128Kernels : KernelSet
{
    public override string Name => "vector128";
    public override bool IsSupported => Vector128.IsHardwareAccelerated && (Ssse3.IsSupported || AdvSimd.Arm64.IsSupported);
    internal override void Xor(byte** sources, int count, byte* destination, nint length) => XorVector128.Run(sources, count, destination, length);
    internal override void PqGen(byte** data, int count, byte* p, byte* q, nint length) => PqGenVector128.Run(data, count, p, q, length);
    internal override void DotProduct(GfCoefficients c, byte** inputs, byte** outputs, nint length, bool accumulate) => DotProductVector128.Run(c, inputs, outputs, length, accumulate);
}

/// <summary>256-bit AVX2 with lane-local <c>vpshufb</c> nibble tables.</summary>
internal sealed unsafe class Avx2Kernels : KernelSet
{
    public override string Name => "avx2";
    public override bool IsSupported => Avx2.IsSupported;
    internal override void Xor(byte** sources, int count, byte* destination, nint length) => XorAvx2.Run(sources, count, destination, length);
    internal override void PqGen(byte** data, int count, byte* p, byte* q, nint length) => PqGenAvx2.Run(data, count, p, q, length);
    internal override void DotProduct(GfCoefficients c, byte** inputs, byte** outputs, nint length, bool accumulate) => DotProductAvx2.Run(c, inputs, outputs, length, accumulate);
}

/// <summary>512-bit AVX-512BW with <c>vpshufb</c> nibble tables.</summary>
internal sealed unsafe class Avx512Kernels : KernelSet
{
    public override string Name => "avx512bw";
    public override bool IsSupported => Avx512BW.IsSupported && Vector512.IsHardwareAccelerated;
    internal override void Xor(byte** sources, int count, byte* destination, nint length) => XorAvx512.Run(sources, count, destination, length);
    internal override void PqGen(byte** data, int count, byte* p, byte* q, nint length) => PqGenAvx512.Run(data, count, p, q, length);
    internal override void DotProduct(GfCoefficients c, byte** inputs, byte** outputs, nint length, bool accumulate) => DotProductAvx512.Run(c, inputs, outputs, length, accumulate);
}

/// <summary>GFNI affine transforms on 256-bit vectors (needs AVX2 for the XOR parts).</summary>
internal sealed unsafe class Gfni256Kernels : KernelSet
{
    public override string Name => "gfni256";
    public override bool IsSupported => Gfni.V256.IsSupported && Avx2.IsSupported;
    internal override void Xor(byte** sources, int count, byte* destination, nint length) => XorAvx2.Run(sources, count, destination, length);
    internal override void PqGen(byte** data, int count, byte* p, byte* q, nint length) => PqGenGfni256.Run(data, count, p, q, length);
    internal override void DotProduct(GfCoefficients c, byte** inputs, byte** outputs, nint length, bool accumulate) => DotProductGfni256.Run(c, inputs, outputs, length, accumulate);
}

/// <summary>GFNI affine transforms on 512-bit vectors (needs AVX-512BW).</summary>
internal sealed unsafe class Gfni512Kernels : KernelSet
{
    public override string Name => "gfni512";
    public override bool IsSupported => Gfni.V512.IsSupported && Avx512BW.IsSupported && Vector512.IsHardwareAccelerated;
    internal override void Xor(byte** sources, int count, byte* destination, nint length) => XorAvx512.Run(sources, count, destination, length);
    internal override void PqGen(byte** data, int count, byte* p, byte* q, nint length) => PqGenGfni512.Run(data, count, p, q, length);
    internal override void DotProduct(GfCoefficients c, byte** inputs, byte** outputs, nint length, bool accumulate) => DotProductGfni512.Run(c, inputs, outputs, length, accumulate);
}
