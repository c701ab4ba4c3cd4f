/* safetensors.h - the checkpoint reader of safetensors.c on bytes already in
 * memory, for the fuzz target (fuzz/fuzz_safetensors.c): the same checks as
 * mela_checkpoint_open, without a file. Not installed, not exported. */
#ifndef MELA_IO_SAFETENSORS_H
#define MELA_IO_SAFETENSORS_H

#include <stddef.h>

#include "mela_io.h"

/* Parses size bytes (copied) as a checkpoint file called name in messages;
 * the checkpoint, or NULL with mela_last_error set. */
mela_checkpoint *io_checkpoint_from_memory(const char *name, const void *bytes, size_t size);

#endif
