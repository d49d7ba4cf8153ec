/* What a file that is not safetensors looks like: the other formats users
 * hand us by mistake, recognised by their first bytes, each with the way to
 * convert it (docs/formats.md, "Other formats"). */
#include <string.h>

#include "model/model.h"

typedef struct kind {
    const char *looks;   /* "it looks like ..." */
    const char *convert; /* what to do */
} kind;

static const kind GGUF = {"a GGUF file (llama.cpp)",
                          "convert the original Hugging Face checkpoint instead, or dequantize "
                          "with the gguf Python package"};
static const kind TORCH_ZIP = {"a PyTorch checkpoint (torch.save's zip format)",
                               "convert it with torch.load and safetensors.torch.save_file"};
static const kind PICKLE = {"a Python pickle (torch.save's legacy format?)",
                            "convert it with torch.load and safetensors.torch.save_file"};
static const kind NPZ = {"a NumPy .npz archive",
                         "convert it with numpy.load and safetensors.numpy.save_file"};
static const kind ZIP = {"a zip archive", "unpack it, or convert its arrays to safetensors"};
static const kind NPY = {"a NumPy .npy array",
                         "convert it with numpy.load and safetensors.numpy.save_file"};
static const kind HDF5 = {"an HDF5 file (Keras .h5?)",
                          "load it with Keras or h5py and save the weights with "
                          "safetensors.numpy.save_file"};
static const kind ONNX = {"an ONNX model",
                          "convert its initializers with onnx.numpy_helper.to_array and "
                          "safetensors.numpy.save_file"};
static const kind JSONTEXT = {"a JSON document",
                              "a sharded checkpoint is opened by the path of its "
                              "*.safetensors.index.json (a path ending in .json)"};
static const kind TEXT = {"a text file", "give the path of a .safetensors file"};

static bool has(const unsigned char *p, size_t n, const char *magic, size_t mlen)
{
    return n >= mlen && memcmp(p, magic, mlen) == 0;
}

/* Does the byte string s occur in the first n bytes of p? */
static bool contains(const unsigned char *p, size_t n, const char *s)
{
    size_t k = strlen(s);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(p + i, s, k) == 0)
            return true;
    return false;
}

/* UTF-8 without control characters (a cut multi-byte character at the
 * end of the probe is forgiven). */
static bool texty(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((p[i] < 0x20 && p[i] != '\n' && p[i] != '\r' && p[i] != '\t') || p[i] == 0x7f)
            return false;
    size_t cut = n;
    while (cut > 0 && n - cut < 3 && (p[cut - 1] & 0xc0) == 0x80)
        cut--;
    if (cut > 0 && p[cut - 1] >= 0xc0)
        cut--;
    return n > 0 && sresid__utf8_valid((const char *)p, cut);
}

static const kind *recognise(const unsigned char *p, size_t n)
{
    if (has(p, n, "GGUF", 4))
        return &GGUF;
    if (has(p, n, "PK\x03\x04", 4)) {
        size_t head = n < 65536 ? n : 65536; /* the first entries' names */
        if (contains(p, head, "data.pkl"))
            return &TORCH_ZIP;
        if (contains(p, head, ".npy"))
            return &NPZ;
        return &ZIP;
    }
    if (n >= 2 && p[0] == 0x80 && p[1] >= 2 && p[1] <= 5)
        return &PICKLE;
    if (has(p, n, "\x93NUMPY", 6))
        return &NPY;
    if (has(p, n, "\x89HDF\r\n\x1a\n", 8))
        return &HDF5;
    /* ONNX: a protobuf ModelProto opens with ir_version (field 1, varint)
     * then producer_name (field 2) or opset_import / graph fields */
    if (n >= 4 && p[0] == 0x08 && p[1] < 0x40 &&
        (p[2] == 0x12 || p[2] == 0x1a || p[2] == 0x3a || p[2] == 0x42))
        return &ONNX;
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
        i++;
    size_t probe = n - i < 512 ? n - i : 512;
    if (i < n && (p[i] == '{' || p[i] == '[') && texty(p + i, probe))
        return &JSONTEXT;
    if (texty(p, n < 512 ? n : 512))
        return &TEXT;
    return NULL;
}

sresid_status sresid__sniff_other_format(const unsigned char *p, size_t n, const char *path)
{
    const kind *k = recognise(p, n);
    if (!k)
        return SRESID_OK;
    return sresid__fail(SRESID_ERR_FORMAT, "%s: not a safetensors file: it looks like %s; %s "
                        "(docs/formats.md, \"Other formats\")", path, k->looks, k->convert);
}
