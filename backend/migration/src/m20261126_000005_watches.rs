//! Smartwatches: pairings (a code shown on the watch, claimed from a phone)
//! and paired devices (a token bound to a user, following a session).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WatchPairings {
    Table,
    Id,
    Code,
    PollSecretHash,
    DeviceName,
    TickIntervalS,
    CreatedAt,
    ExpiresAt,
    ClaimedAt,
    DeviceId,
}

#[derive(DeriveIden)]
enum WatchDevices {
    Table,
    Id,
    UserId,
    SessionId,
    Name,
    TokenHash,
    TickIntervalS,
    LastAlertSeq,
    CreatedAt,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WatchPairings::Table)
                    .col(
                        ColumnDef::new(WatchPairings::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(WatchPairings::Code).string_len(6).not_null())
                    .col(
                        ColumnDef::new(WatchPairings::PollSecretHash)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(WatchPairings::DeviceName).string().null())
                    .col(
                        ColumnDef::new(WatchPairings::TickIntervalS)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WatchPairings::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WatchPairings::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WatchPairings::ClaimedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(WatchPairings::DeviceId).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_watch_pairings_code")
                    .table(WatchPairings::Table)
                    .col(WatchPairings::Code)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WatchDevices::Table)
                    .col(
                        ColumnDef::new(WatchDevices::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(WatchDevices::UserId).uuid().not_null())
                    .col(ColumnDef::new(WatchDevices::SessionId).uuid().not_null())
                    .col(ColumnDef::new(WatchDevices::Name).string().not_null())
                    .col(
                        ColumnDef::new(WatchDevices::TokenHash)
                            .string()
                            .null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(WatchDevices::TickIntervalS)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WatchDevices::LastAlertSeq)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(WatchDevices::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WatchDevices::LastSeenAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(WatchDevices::Table, WatchDevices::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(WatchDevices::Table, WatchDevices::SessionId)
                            .to(Sessions::Table, Sessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_watch_devices_user")
                    .table(WatchDevices::Table)
                    .col(WatchDevices::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WatchDevices::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(WatchPairings::Table).to_owned())
            .await
    }
}
