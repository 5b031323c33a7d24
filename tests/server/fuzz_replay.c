/* fuzz_replay.c - run every file of a corpus directory through the fuzz
 * target once: the regression runner for builds without libFuzzer.
 * Usage: fuzz_replay DIR... ; exits non-zero if a directory has no files. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			uint8_t *grown = realloc(buf, cap);
			if (!grown) {
				free(buf);
				fclose(f);
				return -1;
			}
			buf = grown;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		if (n == 0)
			break;
		len += n;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	int files = 0;
	for (int a = 1; a < argc; a++) {
		DIR *dir = opendir(argv[a]);
		if (!dir) {
			fprintf(stderr, "fuzz_replay: cannot open %s\n", argv[a]);
			return 1;
		}
		struct dirent *e;
		while ((e = readdir(dir))) {
			char path[4096];
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[a], e->d_name);
			if (replay_file(path) != 0) {
				fprintf(stderr, "fuzz_replay: cannot read %s\n", path);
				closedir(dir);
				return 1;
			}
			files++;
		}
		closedir(dir);
	}
	printf("fuzz_replay: %d inputs, no crash\n", files);
	return files > 0 ? 0 : 1;
}
